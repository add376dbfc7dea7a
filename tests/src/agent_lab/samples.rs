//! The lab's clients: new connections and long-lived ones to the web
//! service, and what they got ([`Samples`]).

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use failover::lab::load::{self, Failed, Load, LongLived, Plan};

use super::{AgentLab, SERVICE_PORT, VIP};
use crate::netns::NetNs;

/// The lab's web service: the VIP and service port.
pub fn web() -> SocketAddr {
    SocketAddr::from((VIP, SERVICE_PORT))
}

/// New connections to the web service every `pause` (each bounded by
/// `timeout`), recorded on a background thread: [`crate::load::Load`].
pub fn new_flows(client: &NetNs, pause: Duration, timeout: Duration) -> Load {
    Load::start(client, Plan::new_flows(web(), pause, timeout)).expect("start the client load")
}

/// New connections to the web service every `new_every` (each bounded by
/// `timeout`) and a request every `long_every` on each of `long` (each
/// stops at its first failure: it is gone).
pub fn load_with_long(
    client: &NetNs,
    new_every: Duration,
    timeout: Duration,
    long: Vec<TcpStream>,
    long_every: Duration,
) -> Load {
    let plan = Plan {
        long: Some(LongLived {
            streams: long.into_iter().map(Some).collect(),
            every: long_every,
            reconnect: None,
        }),
        ..Plan::new_flows(web(), new_every, timeout)
    };
    Load::start(client, plan).expect("start the client load")
}

/// A connection to the VIP (call inside the client namespace).
pub fn connect_vip(timeout: Duration) -> std::io::Result<TcpStream> {
    load::connect(web(), timeout)
}

/// One short connection with one request (call inside the client
/// namespace): the answering backend, or what went wrong.
pub fn request(timeout: Duration) -> Result<String, Failed> {
    load::request(web(), timeout)
}

/// Timestamped results of new connections, and the backend they were
/// waiting for ([`AgentLab::sample_until`]), if any.
pub struct Samples(
    pub Vec<(Duration, Result<String, Failed>)>,
    pub Option<String>,
);

impl Samples {
    /// When the wanted backend first answered, if it did. Samples taken
    /// without a wanted backend never reach anything.
    pub fn reached(&self) -> Option<Duration> {
        let want = self.1.as_deref()?;
        self.0
            .iter()
            .find(|(_, result)| result.as_deref() == Ok(want))
            .map(|(at, _)| *at)
    }

    pub fn failures(&self) -> usize {
        self.0.iter().filter(|(_, r)| r.is_err()).count()
    }

    pub fn answered_by(&self, name: &str) -> usize {
        self.0
            .iter()
            .filter(|(_, r)| r.as_deref() == Ok(name))
            .count()
    }

    /// How often consecutive answered samples came from different backends.
    pub fn switches(&self) -> usize {
        let answers: Vec<&String> = self.0.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        answers.windows(2).filter(|w| w[0] != w[1]).count()
    }

    /// Runs of equal results: "primary×12 @0ms, connect: refused×3 @130ms, ...".
    pub fn summary(&self) -> String {
        let mut runs: Vec<(String, usize, Duration)> = Vec::new();
        for (at, result) in &self.0 {
            let label = match result {
                Ok(name) => name.clone(),
                Err(err) => err.detail.clone(),
            };
            match runs.last_mut() {
                Some((last, n, _)) if *last == label => *n += 1,
                _ => runs.push((label, 1, *at)),
            }
        }
        let runs: Vec<String> = runs
            .iter()
            .map(|(label, n, at)| format!("{label}×{n} @{}ms", at.as_millis()))
            .collect();
        format!("[{}]", runs.join(", "))
    }
}

impl AgentLab {
    /// A TCP connection to the VIP from the client namespace.
    pub fn connect(&self) -> TcpStream {
        self.client
            .run(|| connect_vip(Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("connect to the vip: {e}\n{}", self.diag()))
    }

    /// New connections every 10 ms (each given 250 ms) until one is
    /// answered by `want` (and then stops), for at most `bound`. Times are
    /// from the call.
    pub fn sample_until(&self, want: &str, bound: Duration) -> Samples {
        let started = Instant::now();
        self.sample_until_since(want, bound, started, Duration::from_millis(250))
    }

    /// Like [`Self::sample_until`], with times measured from `since` and
    /// `timeout` for each connection (its connect, send and receive).
    pub fn sample_until_since(
        &self,
        want: &str,
        bound: Duration,
        since: Instant,
        timeout: Duration,
    ) -> Samples {
        self.client.run(|| {
            let started = Instant::now();
            let mut samples = Vec::new();
            while started.elapsed() < bound {
                let result = request(timeout);
                let done = result.as_deref() == Ok(want);
                samples.push((since.elapsed(), result));
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Samples(samples, Some(want.to_owned()))
        })
    }

    /// `n` new connections, one every `pause`.
    pub fn sample(&self, n: usize, pause: Duration) -> Samples {
        self.client.run(|| {
            let started = Instant::now();
            let mut samples = Vec::new();
            for _ in 0..n {
                let result = request(Duration::from_millis(500));
                samples.push((started.elapsed(), result));
                std::thread::sleep(pause);
            }
            Samples(samples, None)
        })
    }
}
