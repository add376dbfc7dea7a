//! The fleet: two edge hosts behind an upstream router (BIRD, BGP with BFD,
//! ECMP), each announcing the VIP through its own BIRD while it can serve
//! it (`failover_tests::fleet_lab`).
//!
//! - `announce`: both hosts announce; a host whose agent is killed, that
//!   cannot reach a backend, or whose agent stops is withdrawn, and comes
//!   back;
//! - `drain`: `failover host drain` moves a host's traffic without a failed
//!   connection, lasts across a restart and says when the host is idle;
//! - `pinned`: flows pinned off the table (`[sync]`) survive their host,
//!   and a host that returns with an empty table continues those the other
//!   pinned meanwhile;
//! - `survival`: connections established through a host that is gone go
//!   on through the other one, and are not reset when it returns; a
//!   routing daemon restarted under load fails no connection.

mod announce;
mod drain;
mod pinned;
mod survival;

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use failover::lab::load;
use failover_tests::fleet_lab::{FleetLab, SERVICE_PORT, VIP};

/// How long the routers get to withdraw a host (BFD 3 × 100 ms, BGP, the
/// router's kernel) or to take one back (a new BGP session).
const WITHDRAW_BOUND: Duration = Duration::from_secs(5);
const RETURN_BOUND: Duration = Duration::from_secs(30);

fn web() -> SocketAddr {
    SocketAddr::from((VIP, SERVICE_PORT))
}

/// The events of `kind` in an edge host's journal.
fn journal_events(path: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["kind"] == kind)
        .collect()
}

/// Waits (bounded) until an edge host's journal holds `n` events of `kind`
/// (the journal is written off the decision loop).
fn wait_journal(path: &std::path::Path, kind: &str, n: usize) -> Vec<serde_json::Value> {
    let started = std::time::Instant::now();
    loop {
        let events = journal_events(path, kind);
        if events.len() >= n || started.elapsed() > Duration::from_secs(5) {
            return events;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const LONG: usize = 40;

/// `LONG` connections through the VIP (each read bounded by
/// `read_timeout`), and who answered each first.
pub fn long_connections(lab: &FleetLab, read_timeout: Duration) -> (Vec<TcpStream>, Vec<String>) {
    let streams: Vec<TcpStream> = lab.client.run(|| {
        (0..LONG)
            .map(|_| {
                let stream = load::connect(web(), Duration::from_secs(2)).expect("connect");
                stream
                    .set_read_timeout(Some(read_timeout))
                    .expect("timeout");
                stream
            })
            .collect()
    });
    let first = streams
        .iter()
        .map(|s| ask(s).expect("first answer"))
        .collect();
    (streams, first)
}

/// The connections that no longer answer, or answer from another backend
/// than `first`.
pub fn changed_answers(streams: &[TcpStream], first: &[String]) -> Vec<String> {
    streams
        .iter()
        .map(ask)
        .zip(first)
        .filter(|(now, before)| now.as_ref().ok() != Some(*before))
        .map(|(now, before)| format!("{before} -> {now:?}"))
        .collect()
}

pub fn ask(stream: &TcpStream) -> std::io::Result<String> {
    (&*stream).write_all(b"hello\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim().to_owned())
}
