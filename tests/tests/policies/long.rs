//! Long-lived connections: opened before a failure, asked after it.

use std::{
    collections::BTreeMap,
    net::TcpStream,
    time::{Duration, Instant},
};

use failover_tests::agent_lab::{AgentLab, ask};

/// A long-lived connection through the VIP and the backend that answered
/// its first request.
pub struct Long {
    pub stream: TcpStream,
    pub port: u16,
    pub backend: String,
}

/// `n` long-lived connections, each asked once.
pub fn open_long(lab: &AgentLab, n: usize) -> Vec<Long> {
    (0..n)
        .map(|i| {
            let mut stream = lab.connect();
            let backend = ask(&mut stream)
                .unwrap_or_else(|e| panic!("long connection {i}: {e}\n{}", lab.diag()));
            let port = stream.local_addr().expect("local address").port();
            Long {
                stream,
                port,
                backend,
            }
        })
        .collect()
}

pub fn count_by_backend(longs: &[Long]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for long in longs {
        *counts.entry(long.backend.clone()).or_insert(0) += 1;
    }
    counts
}

/// What one request on a long connection got, and how long it took.
pub struct Asked {
    pub result: Result<String, String>,
    pub took: Duration,
}

pub fn ask_long(long: &mut Long) -> Asked {
    let started = Instant::now();
    let result = ask(&mut long.stream).map_err(|e| format!("{:?}: {e}", e.kind()));
    Asked {
        result,
        took: started.elapsed(),
    }
}

/// Asks on each of `longs`; returns the ones not answered by their own
/// backend, as "port backend → result".
pub fn disturbed(longs: &mut [&mut Long]) -> Vec<String> {
    longs
        .iter_mut()
        .filter_map(|long| {
            let asked = ask_long(long);
            (asked.result.as_deref() != Ok(long.backend.as_str())).then(|| {
                format!(
                    ":{} {} → {:?} after {:?}",
                    long.port, long.backend, asked.result, asked.took
                )
            })
        })
        .collect()
}
