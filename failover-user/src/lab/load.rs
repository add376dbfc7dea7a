//! Client load through a VIP, recorded one way for the demo, the tests and
//! the benchmarks: new connections (one request each) at a steady pace,
//! requests on long-lived connections, and UDP datagrams, each sample
//! timestamped with its start and end and its answer (the backend's name)
//! or why it failed. A request fails when it gets no answer from a backend
//! within its timeout, wherever that happens; nothing else is a failure.
//!
//! Bounded: every thread stops after the plan's lifetime whatever its
//! caller does, and `Drop` stops and joins them all.

use std::{
    collections::VecDeque,
    fmt,
    io::ErrorKind,
    net::{SocketAddr, TcpStream, UdpSocket},
    ops::Range,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{netns::NetNs, servers::ask};

/// How a request failed, as a client would tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Refused,
    /// Reset or closed before the answer.
    Reset,
    Timeout,
    Other,
}

impl FailureKind {
    pub fn of(err: &std::io::Error) -> Self {
        match err.kind() {
            ErrorKind::ConnectionRefused => Self::Refused,
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Self::Reset,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Self::Timeout,
            _ => Self::Other,
        }
    }
}

/// A failed request: its kind, the socket error, and where and how it
/// failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub kind: FailureKind,
    pub io: ErrorKind,
    pub detail: String,
}

impl Failed {
    fn io(stage: &str, err: &std::io::Error) -> Self {
        Self {
            kind: FailureKind::of(err),
            io: err.kind(),
            detail: format!("{stage}: {err}"),
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// One request: when it started and ended, and who answered.
#[derive(Clone, Debug)]
pub struct Sample {
    pub started: Instant,
    pub done: Instant,
    pub result: Result<String, Failed>,
}

/// A connection to `target` with every operation bounded by `timeout` (call
/// inside the client's namespace).
pub fn connect(target: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One short connection with one request (inside the client's namespace).
pub fn request(target: SocketAddr, timeout: Duration) -> Result<String, Failed> {
    let mut stream = connect(target, timeout).map_err(|e| Failed::io("connect", &e))?;
    ask(&mut stream).map_err(|e| Failed::io("ask", &e))
}

/// What a [`Load`] has seen.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// New connections, in the order they started.
    pub new_flows: Vec<Sample>,
    /// Per long-lived connection, in order.
    pub long: Vec<Vec<Sample>>,
    /// Answered UDP datagrams (unanswered ones are not samples).
    pub udp: Vec<Sample>,
}

impl Recorded {
    /// Failed requests, new and long-lived.
    pub fn failures(&self) -> usize {
        self.new_flows
            .iter()
            .chain(self.long.iter().flatten())
            .filter(|s| s.result.is_err())
            .count()
    }

    /// Each failure with its start time from `t0`.
    pub fn failed(&self, t0: Instant) -> Vec<String> {
        self.new_flows
            .iter()
            .map(|s| ("new", s))
            .chain(self.long.iter().flatten().map(|s| ("long", s)))
            .filter_map(|(what, s)| {
                s.result.as_ref().err().map(|e| {
                    let at = s.started.saturating_duration_since(t0).as_millis();
                    format!("{what} @{at}ms: {e}")
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
            Err(err) => err.detail.clone(),
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

/// Long-lived connections and what to do when one breaks.
pub struct LongLived {
    pub streams: Vec<Option<TcpStream>>,
    pub every: Duration,
    /// Reconnect a broken connection (or open a missing one) to this
    /// target, with this timeout, on its next turn; `None`: a broken
    /// connection stops (it is gone).
    pub reconnect: Option<(SocketAddr, Duration)>,
}

/// Datagrams to a UDP service, each from a new source port of `ports` (a
/// new flow each, like DNS queries).
pub struct Datagrams {
    pub target: SocketAddr,
    pub every: Duration,
    pub ports: Range<u16>,
}

/// What load to run.
pub struct Plan {
    pub target: SocketAddr,
    /// Bound of each request (connect, and each read and write).
    pub timeout: Duration,
    /// A new connection this often.
    pub new_every: Option<Duration>,
    /// More than 1: open loop, a new connection every `new_every` whatever
    /// became of the previous ones, at most this many at a time; 1: the next
    /// starts when the previous ended (and not before its turn).
    pub in_flight: usize,
    pub long: Option<LongLived>,
    pub udp: Option<Datagrams>,
    /// Every thread stops after this.
    pub lifetime: Duration,
}

impl Plan {
    /// New connections to `target` every `every`, one at a time.
    pub fn new_flows(target: SocketAddr, every: Duration, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            new_every: Some(every),
            in_flight: 1,
            long: None,
            udp: None,
            lifetime: Duration::from_secs(120),
        }
    }
}

/// A running load; [`Load::finish`] stops it and returns what it saw.
pub struct Load {
    stop: Arc<AtomicBool>,
    recorded: Arc<Mutex<Recorded>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `plan` from `client`'s namespace.
    pub fn start(client: &NetNs, plan: Plan) -> anyhow::Result<Self> {
        let long_count = plan.long.as_ref().map_or(0, |l| l.streams.len());
        let mut load = Self {
            stop: Arc::new(AtomicBool::new(false)),
            recorded: Arc::new(Mutex::new(Recorded {
                long: vec![Vec::new(); long_count],
                ..Recorded::default()
            })),
            threads: Vec::new(),
        };
        let lifetime = plan.lifetime;
        if let Some(every) = plan.new_every {
            let (target, timeout, in_flight) = (plan.target, plan.timeout, plan.in_flight);
            load.spawn(client, "load-new", move |stop, recorded| {
                new_flows(
                    stop,
                    recorded,
                    lifetime,
                    (target, every, timeout),
                    in_flight,
                )
            })?;
        }
        if let Some(long) = plan.long {
            let (every, reconnect) = (long.every, long.reconnect);
            for (i, stream) in long.streams.into_iter().enumerate() {
                load.spawn(client, &format!("load-long-{i}"), move |stop, recorded| {
                    long_lived(stop, recorded, lifetime, i, stream, (every, reconnect))
                })?;
            }
        }
        if let Some(udp) = plan.udp {
            let timeout = plan.timeout;
            load.spawn(client, "load-udp", move |stop, recorded| {
                datagrams(stop, recorded, lifetime, &udp, timeout)
            })?;
        }
        Ok(load)
    }

    fn spawn(
        &mut self,
        client: &NetNs,
        name: &str,
        body: impl FnOnce(&AtomicBool, &Mutex<Recorded>) + Send + 'static,
    ) -> anyhow::Result<()> {
        let ns = client.open()?;
        let (stop, recorded) = (self.stop.clone(), self.recorded.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if ns.enter().is_ok() {
                    drop(ns);
                    body(&stop, &recorded);
                }
            })
            .with_context(|| format!("spawning the {name} thread"))?;
        self.threads.push(thread);
        Ok(())
    }

    /// What the load has seen so far (new flows in the order they started).
    pub fn snapshot(&self) -> Recorded {
        let mut recorded = self
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        recorded.new_flows.sort_by_key(|s| s.started);
        recorded
    }

    /// Stops the load, waits for requests under way, returns everything.
    pub fn finish(mut self) -> Recorded {
        self.stop_and_join();
        self.snapshot()
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn running(stop: &AtomicBool, begun: Instant, lifetime: Duration) -> bool {
    !stop.load(Ordering::Relaxed) && begun.elapsed() < lifetime
}

fn record(recorded: &Mutex<Recorded>, add: impl FnOnce(&mut Recorded)) {
    add(&mut recorded.lock().unwrap_or_else(|e| e.into_inner()));
}

/// New connections at a steady pace (see [`Plan::in_flight`]); requests in
/// an open loop each run on their own thread (threads inherit the caller's
/// network namespace).
fn new_flows(
    stop: &AtomicBool,
    recorded: &Mutex<Recorded>,
    lifetime: Duration,
    (target, every, timeout): (SocketAddr, Duration, Duration),
    in_flight: usize,
) {
    let begun = Instant::now();
    let mut next = begun;
    let mut under_way: Vec<JoinHandle<Sample>> = Vec::new();
    while running(stop, begun, lifetime) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += every;
        let ask = move || {
            let started = Instant::now();
            let result = request(target, timeout);
            Sample {
                started,
                done: Instant::now(),
                result,
            }
        };
        if in_flight <= 1 {
            let sample = ask();
            // After a slow request, start again from now instead of bursting.
            next = next.max(sample.done);
            record(recorded, |r| r.new_flows.push(sample));
            continue;
        }
        let (done, still): (Vec<_>, Vec<_>) = under_way.drain(..).partition(|t| t.is_finished());
        under_way = still;
        let mut done: Vec<Sample> = done.into_iter().filter_map(|t| t.join().ok()).collect();
        record(recorded, |r| r.new_flows.append(&mut done));
        if under_way.len() < in_flight
            && let Ok(thread) = std::thread::Builder::new()
                .name("load-request".into())
                .spawn(ask)
        {
            under_way.push(thread);
        }
    }
    let mut rest: Vec<Sample> = under_way
        .into_iter()
        .filter_map(|t| t.join().ok())
        .collect();
    record(recorded, |r| r.new_flows.append(&mut rest));
}

/// Asks on one long-lived connection every `every`; a broken connection is
/// reconnected on its next turn or, without a target for that, stops.
fn long_lived(
    stop: &AtomicBool,
    recorded: &Mutex<Recorded>,
    lifetime: Duration,
    index: usize,
    mut stream: Option<TcpStream>,
    (every, reconnect): (Duration, Option<(SocketAddr, Duration)>),
) {
    let begun = Instant::now();
    while running(stop, begun, lifetime) {
        let started = Instant::now();
        let connected = match (stream.take(), reconnect) {
            (Some(stream), _) => Ok(stream),
            (None, Some((target, timeout))) => {
                connect(target, timeout).map_err(|e| Failed::io("connect", &e))
            }
            (None, None) => return,
        };
        let result = connected.and_then(|mut s| {
            let answer = ask(&mut s).map_err(|e| Failed::io("ask", &e));
            if answer.is_ok() {
                stream = Some(s);
            }
            answer
        });
        let failed = result.is_err();
        let sample = Sample {
            started,
            done: Instant::now(),
            result,
        };
        record(recorded, |r| r.long[index].push(sample));
        if failed && reconnect.is_none() {
            return;
        }
        std::thread::sleep(every);
    }
}

/// A datagram every `every` from the next source port, answers recorded
/// until `timeout` after each was sent.
fn datagrams(
    stop: &AtomicBool,
    recorded: &Mutex<Recorded>,
    lifetime: Duration,
    plan: &Datagrams,
    timeout: Duration,
) {
    let begun = Instant::now();
    let mut port = plan.ports.start;
    let mut open: VecDeque<(Instant, UdpSocket)> = VecDeque::new();
    let mut next_send = begun;
    let mut buf = [0u8; 64];
    while running(stop, begun, lifetime) {
        if Instant::now() >= next_send {
            next_send += plan.every;
            port = if port + 1 >= plan.ports.end {
                plan.ports.start
            } else {
                port + 1
            };
            if let Ok(socket) = UdpSocket::bind(("0.0.0.0", port))
                && socket.connect(plan.target).is_ok()
                && socket.set_nonblocking(true).is_ok()
            {
                // Refused or dropped sends are just unanswered.
                let _ = socket.send(b"x\n");
                open.push_back((Instant::now(), socket));
            }
        }
        while open
            .front()
            .is_some_and(|(sent, _)| sent.elapsed() > timeout)
        {
            open.pop_front();
        }
        for (sent, socket) in &open {
            if let Ok(n) = socket.recv(&mut buf) {
                let sample = Sample {
                    started: *sent,
                    done: Instant::now(),
                    result: Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()),
                };
                record(recorded, |r| r.udp.push(sample));
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}
