//! Client load through the VIP, recorded the one way every test counts it:
//! a new connection every so often (one request each), and requests on
//! long-lived connections, each timestamped with its start and end. A
//! failed request is a failure wherever it happens; a long-lived connection
//! stops at its first failure (it is gone). Bounded: every thread stops at
//! [`MAX_LIFETIME`] whatever the test does, and `Drop` stops and joins them.

use std::{
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{netns::NetNs, servers::ask};

/// Every load thread gives up after this, whatever the test does.
pub const MAX_LIFETIME: Duration = Duration::from_secs(120);

/// A connection to `target` (call inside the client namespace).
pub fn connect(target: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One short connection with one request (inside the client namespace).
pub fn request(target: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut stream = connect(target, timeout).map_err(|e| format!("connect: {e}"))?;
    ask(&mut stream).map_err(|e| format!("ask: {e}"))
}

/// One request and when it started and ended.
#[derive(Clone, Debug)]
pub struct Sample {
    pub started: Instant,
    pub done: Instant,
    pub result: Result<String, String>,
}

/// What a [`Load`] saw.
pub struct Recorded {
    pub new_flows: Vec<Sample>,
    /// Per long-lived connection (each stops at its first failure).
    pub long: Vec<Vec<Sample>>,
}

impl Recorded {
    pub fn failures(&self) -> usize {
        self.new_flows.iter().filter(|s| s.result.is_err()).count()
            + self
                .long
                .iter()
                .flatten()
                .filter(|s| s.result.is_err())
                .count()
    }

    pub fn failed(&self, t0: Instant) -> Vec<String> {
        self.new_flows
            .iter()
            .map(|s| ("new", s))
            .chain(self.long.iter().flatten().map(|s| ("long", s)))
            .filter_map(|(what, s)| {
                s.result.as_ref().err().map(|e| {
                    format!(
                        "{what} @{}ms: {e}",
                        s.started.saturating_duration_since(t0).as_millis()
                    )
                })
            })
            .collect()
    }
}

/// Runs of equal results, times from `t0`: "primary×12 @0ms, ...".
pub fn summary(samples: &[Sample], t0: Instant) -> String {
    let mut runs: Vec<(String, usize, Duration)> = Vec::new();
    for s in samples {
        let label = match &s.result {
            Ok(name) => name.clone(),
            Err(err) => err.clone(),
        };
        let at = s.started.saturating_duration_since(t0);
        match runs.last_mut() {
            Some((last, n, _)) if *last == label => *n += 1,
            _ => runs.push((label, 1, at)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|(label, n, at)| format!("{label}×{n} @{}ms", at.as_millis()))
        .collect();
    format!("[{}]", runs.join(", "))
}

/// Continuous client load: a new connection to `target` every `new_every`
/// (if given) and a request every `long_every` on each long-lived
/// connection, each on its own thread.
pub struct Load {
    stop: Arc<AtomicBool>,
    new_flows: Option<JoinHandle<Vec<Sample>>>,
    long: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// From `client`'s namespace: a new connection to `target` every
    /// `new_every` (if given), each request bounded by `timeout`, and a
    /// request every `long_every` on each of `long`.
    pub fn start(
        client: &NetNs,
        target: SocketAddr,
        new_every: Option<Duration>,
        timeout: Duration,
        long: Vec<TcpStream>,
        long_every: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let new_flows = new_every.map(|pause| {
            let ns = client.open().expect("open the client netns");
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("load-new".into())
                .spawn(move || {
                    ns.enter().expect("enter the client netns");
                    let begun = Instant::now();
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) && begun.elapsed() < MAX_LIFETIME {
                        let started = Instant::now();
                        let result = request(target, timeout);
                        samples.push(Sample {
                            started,
                            done: Instant::now(),
                            result,
                        });
                        std::thread::sleep(pause);
                    }
                    samples
                })
                .expect("spawn the new-flow load")
        });
        let long = long
            .into_iter()
            .enumerate()
            .map(|(i, mut stream)| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("load-long-{i}"))
                    .spawn(move || {
                        let begun = Instant::now();
                        let mut samples = Vec::new();
                        while !stop.load(Ordering::Relaxed) && begun.elapsed() < MAX_LIFETIME {
                            let started = Instant::now();
                            let result =
                                ask(&mut stream).map_err(|e| format!("{:?}: {e}", e.kind()));
                            let failed = result.is_err();
                            samples.push(Sample {
                                started,
                                done: Instant::now(),
                                result,
                            });
                            if failed {
                                break;
                            }
                            std::thread::sleep(long_every);
                        }
                        samples
                    })
                    .expect("spawn a long-lived load")
            })
            .collect();
        Self {
            stop,
            new_flows,
            long,
        }
    }

    pub fn finish(mut self) -> Recorded {
        self.stop.store(true, Ordering::Relaxed);
        let join = |h: JoinHandle<Vec<Sample>>| {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        Recorded {
            new_flows: self.new_flows.take().map(join).unwrap_or_default(),
            long: self.long.drain(..).map(join).collect(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.new_flows.take() {
            let _ = h.join();
        }
        for h in self.long.drain(..) {
            let _ = h.join();
        }
    }
}
