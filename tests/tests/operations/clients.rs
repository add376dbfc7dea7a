//! The client's connections through the VIP: the web service's address,
//! long-lived connections and samples of new ones.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use failover_tests::agent_lab::{AgentLab, SERVICE_PORT, VIP, ask, load_with_long};
use failover_tests::load::{Failed, Load, connect, request};

/// Timeout of each client connection (connect, send, receive).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

pub fn web() -> SocketAddr {
    SocketAddr::from((VIP, SERVICE_PORT))
}

/// `n` long-lived connections to `target`, each checked to be answered by
/// `by` once.
pub fn open_long(lab: &AgentLab, target: SocketAddr, n: usize, by: &str) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut stream = lab
                .client
                .run(|| connect(target, Duration::from_secs(2)))
                .unwrap_or_else(|e| panic!("long connection {i}: {e}\n{}", lab.diag()));
            let first = ask(&mut stream)
                .unwrap_or_else(|e| panic!("long connection {i}: {e}\n{}", lab.diag()));
            assert_eq!(first, by, "long connection {i}");
            stream
        })
        .collect()
}

/// Client load on web, already running for `warm_up` when this returns: a
/// new connection every `new_every` and a request every 50 ms on each of
/// `long`, every one bounded by [`REQUEST_TIMEOUT`]. The load, and when it
/// started.
pub fn load_on_web(
    lab: &AgentLab,
    new_every: Duration,
    long: Vec<TcpStream>,
    warm_up: Duration,
) -> (Load, Instant) {
    let t0 = Instant::now();
    let load = load_with_long(
        &lab.client,
        new_every,
        REQUEST_TIMEOUT,
        long,
        Duration::from_millis(50),
    );
    std::thread::sleep(warm_up);
    (load, t0)
}

/// `n` new connections from the client to `target`, one every ~10 ms, every
/// one answered by `by`.
#[track_caller]
pub fn assert_answered_by(lab: &AgentLab, target: SocketAddr, n: usize, by: &str) {
    let answers: Vec<Result<String, Failed>> = lab.client.run(|| {
        (0..n)
            .map(|_| {
                let result = request(target, REQUEST_TIMEOUT);
                std::thread::sleep(Duration::from_millis(10));
                result
            })
            .collect()
    });
    assert!(
        answers.iter().all(|r| r.as_deref() == Ok(by)),
        "new connections to {target} not all answered by {by}: {answers:?}\n{}",
        lab.diag()
    );
}
