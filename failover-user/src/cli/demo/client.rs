//! The demo's client: a thread in the client namespace that opens a new TCP
//! connection to the VIP every [`REQUEST_EVERY`] and records who answered.

use std::{
    io::ErrorKind,
    net::{SocketAddr, SocketAddrV4, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Instant,
};

use anyhow::Context as _;

use super::{
    CLIENT_MAX_LIFETIME, CONNECT_TIMEOUT, HOSTS, IO_TIMEOUT, REQUEST_EVERY, VIP, VIP_PORT,
};
use crate::lab::{netns::NetNs, servers};

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// `HOSTS[i]` answered.
    Answer(usize),
    Refused,
    Reset,
    Timeout,
    Other,
}

/// One request of the client.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    pub(super) started: Instant,
    pub(super) finished: Instant,
    pub(super) outcome: Outcome,
}

/// A thread in the client namespace opening a new TCP connection to the VIP
/// every [`REQUEST_EVERY`]; stopped and joined in `Drop`.
pub(super) struct Client {
    pub(super) records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    pub(super) fn start(ns: &NetNs) -> anyhow::Result<Self> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let netns = ns.open()?;
        let thread = {
            let (records, stop) = (records.clone(), stop.clone());
            std::thread::Builder::new()
                .name("demo-client".into())
                .spawn(move || {
                    if let Err(err) = netns.enter() {
                        eprintln!("demo client: setns: {err}");
                        return;
                    }
                    drop(netns);
                    client_loop(&records, &stop);
                })
                .context("spawning the client thread")?
        };
        Ok(Self {
            records,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn client_loop(records: &Mutex<Vec<Record>>, stop: &AtomicBool) {
    let began = Instant::now();
    let vip = SocketAddr::V4(SocketAddrV4::new(VIP, VIP_PORT));
    let mut next = began;
    while !stop.load(Ordering::Relaxed) && began.elapsed() < CLIENT_MAX_LIFETIME {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
            continue;
        }
        let started = Instant::now();
        let outcome = request(vip);
        let finished = Instant::now();
        records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record {
                started,
                finished,
                outcome,
            });
        next += REQUEST_EVERY;
        // After a slow request, start again from now instead of bursting.
        if next < finished {
            next = finished;
        }
    }
}

/// One connection: send a line, read the backend's name.
fn request(vip: SocketAddr) -> Outcome {
    let classify = |err: &std::io::Error| match err.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        // `UnexpectedEof`: closed before the answer.
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof => Outcome::Reset,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::Timeout,
        _ => Outcome::Other,
    };
    let mut stream = match TcpStream::connect_timeout(&vip, CONNECT_TIMEOUT) {
        Ok(stream) => stream,
        Err(err) => return classify(&err),
    };
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return Outcome::Other;
    }
    match servers::ask(&mut stream) {
        Ok(name) => HOSTS
            .iter()
            .position(|h| h.name == name.trim())
            .map_or(Outcome::Other, Outcome::Answer),
        Err(err) => classify(&err),
    }
}
