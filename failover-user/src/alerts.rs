//! Alert hooks: events of the kinds an alert lists are delivered to its
//! webhook (HTTP POST of the event JSON) or command (event JSON on stdin).
//!
//! Delivery never holds up the event loop: each alert has its own bounded
//! queue and worker. The loop only `try_send`s; when an alert's queue is full
//! (its target is down or slow) the event is dropped for that alert, counted
//! and logged. A worker delivers in order, each attempt under the alert's
//! `timeout`, and retries up to `retries` times with exponential backoff.
//!
//! When the event channel closes, the queued deliveries still run; `run`
//! returns when every worker is done. A caller that cannot wait that long
//! drops the future, which stops the workers and kills running commands.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::{
        broadcast::{self, error::RecvError},
        mpsc::{self, error::TrySendError},
    },
    task::JoinSet,
    time::{sleep, timeout},
};
use tracing::{debug, error, warn};

use crate::{
    config::{AlertConfig, AlertTarget},
    events::{Event, EventKind},
};

/// Events queued per alert before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// Pause after the first failed attempt; doubles after each further one.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Most bytes of a webhook response read while looking for its status line.
pub const MAX_STATUS_LINE: usize = 1024;

/// Delivers the events each alert asks for until `events` closes and the
/// queued deliveries are done.
pub async fn run(alerts: Vec<AlertConfig>, events: broadcast::Receiver<Event>) {
    run_with(alerts, events, QUEUE_CAPACITY).await;
}

/// What a run counted, for tests.
#[derive(Debug, Default)]
struct RunStats {
    /// Events the bus dropped before we read them.
    lagged: u64,
    /// Events dropped because the alert's queue was full, per routed alert.
    dropped: Vec<u64>,
}

/// One alert's end of the fan-out.
struct Route {
    label: Arc<str>,
    events: Vec<EventKind>,
    queue: mpsc::Sender<Arc<Delivery>>,
    dropped: u64,
}

/// An event ready to deliver, shared by every alert that wants it.
struct Delivery {
    kind: EventKind,
    service: Option<String>,
    backend: Option<String>,
    json: String,
}

async fn run_with(
    alerts: Vec<AlertConfig>,
    mut events: broadcast::Receiver<Event>,
    capacity: usize,
) -> RunStats {
    let mut routes = Vec::new();
    let mut workers = JoinSet::new();
    for alert in alerts {
        let label: Arc<str> = label(&alert.target).into();
        let target = match Target::new(&alert.target) {
            Ok(target) => target,
            Err(err) => {
                error!(alert = %label, cause = %err, "alert disabled");
                continue;
            }
        };
        let (queue, pending) = mpsc::channel(capacity.max(1));
        workers.spawn(worker(
            label.clone(),
            target,
            alert.timeout,
            alert.retries,
            pending,
        ));
        routes.push(Route {
            label,
            events: alert.events,
            queue,
            dropped: 0,
        });
    }

    let mut stats = RunStats::default();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                stats.lagged += n;
                warn!(
                    lost = n,
                    lost_total = stats.lagged,
                    "alerts fell behind; events lost"
                );
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        if !routes
            .iter()
            .any(|route| route.events.contains(&event.kind))
        {
            continue;
        }
        let delivery = match serde_json::to_string(&event) {
            Ok(json) => Arc::new(Delivery {
                kind: event.kind,
                service: event.service,
                backend: event.backend,
                json,
            }),
            Err(err) => {
                warn!(kind = event.kind.name(), cause = %err, "event not serializable; not alerted");
                continue;
            }
        };
        for route in routes
            .iter_mut()
            .filter(|r| r.events.contains(&delivery.kind))
        {
            match route.queue.try_send(delivery.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    route.dropped += 1;
                    warn!(
                        alert = %route.label,
                        kind = delivery.kind.name(),
                        service = delivery.service.as_deref(),
                        backend = delivery.backend.as_deref(),
                        dropped_total = route.dropped,
                        "alert queue full; event dropped for this alert"
                    );
                }
                Err(TrySendError::Closed(_)) => {
                    warn!(alert = %route.label, kind = delivery.kind.name(), "alert worker gone; event not delivered");
                }
            }
        }
    }

    stats.dropped = routes.iter().map(|route| route.dropped).collect();
    // Closing the queues lets each worker finish what it holds, then end.
    drop(routes);
    while let Some(done) = workers.join_next().await {
        if let Err(err) = done {
            error!(cause = %err, "alert worker panicked");
        }
    }
    stats
}

/// Delivers one alert's queue in order until it closes.
async fn worker(
    label: Arc<str>,
    target: Target,
    limit: Duration,
    retries: u32,
    mut queue: mpsc::Receiver<Arc<Delivery>>,
) {
    while let Some(delivery) = queue.recv().await {
        deliver(&label, &target, limit, retries, &delivery).await;
    }
}

/// One event to one alert: up to `1 + retries` attempts. Returns whether it
/// was delivered.
async fn deliver(
    label: &str,
    target: &Target,
    limit: Duration,
    retries: u32,
    delivery: &Delivery,
) -> bool {
    let attempts = retries.saturating_add(1);
    for attempt in 0..attempts {
        match target.attempt(delivery, limit).await {
            Ok(()) => {
                debug!(
                    alert = label,
                    kind = delivery.kind.name(),
                    service = delivery.service.as_deref(),
                    backend = delivery.backend.as_deref(),
                    attempt = attempt + 1,
                    "alert delivered"
                );
                return true;
            }
            Err(err) => {
                warn!(
                    alert = label,
                    kind = delivery.kind.name(),
                    service = delivery.service.as_deref(),
                    backend = delivery.backend.as_deref(),
                    attempt = attempt + 1,
                    attempts,
                    cause = %crate::error::chain(&err),
                    "alert delivery failed"
                );
                if attempt + 1 < attempts {
                    sleep(backoff(attempt)).await;
                }
            }
        }
    }
    error!(
        alert = label,
        kind = delivery.kind.name(),
        service = delivery.service.as_deref(),
        backend = delivery.backend.as_deref(),
        attempts,
        "alert given up"
    );
    false
}

/// Pause after failed attempt `n` (0-based): 100 ms × 2^n, at most 2 s.
fn backoff(n: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

/// How an alert is named in logs: without the URL path or the command's
/// arguments, which may carry tokens.
fn label(target: &AlertTarget) -> String {
    match target {
        AlertTarget::Webhook { url } => {
            let rest = url.strip_prefix("http://").unwrap_or(url);
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("webhook http://{authority}")
        }
        AlertTarget::Exec { command } => {
            format!("exec {}", command.first().map_or("", String::as_str))
        }
    }
}

/// A parsed alert target.
enum Target {
    Webhook(WebhookUrl),
    Exec { program: String, args: Vec<String> },
}

impl Target {
    fn new(target: &AlertTarget) -> Result<Self, UrlError> {
        Ok(match target {
            AlertTarget::Webhook { url } => Self::Webhook(WebhookUrl::parse(url)?),
            AlertTarget::Exec { command } => {
                let (program, args) = command.split_first().ok_or(UrlError::NoProgram)?;
                Self::Exec {
                    program: program.clone(),
                    args: args.to_vec(),
                }
            }
        })
    }

    /// One attempt, bounded by `limit`.
    async fn attempt(&self, delivery: &Delivery, limit: Duration) -> Result<(), DeliveryError> {
        match self {
            Self::Webhook(url) => timeout(limit, post(url, &delivery.json))
                .await
                .unwrap_or(Err(DeliveryError::TimedOut { after: limit })),
            Self::Exec { program, args } => exec(program, args, delivery, limit).await,
        }
    }
}

/// `http://host[:port][/path]`.
#[derive(Debug, PartialEq, Eq)]
struct WebhookUrl {
    /// Name or address, without IPv6 brackets.
    host: String,
    port: u16,
    /// `host[:port]` as written, for the `Host` header.
    authority: String,
    /// Path and query, `/` when absent.
    path: String,
}

/// A webhook URL or command the alert cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{url}: only http:// webhooks are supported")]
    NotHttp { url: String },
    #[error("{url}: no host")]
    NoHost { url: String },
    #[error("{url}: bad port")]
    BadPort { url: String },
    #[error("{url}: user information in the URL is not supported")]
    UserInfo { url: String },
    #[error("exec alert without a program")]
    NoProgram,
}

impl WebhookUrl {
    fn parse(url: &str) -> Result<Self, UrlError> {
        let err = |make: fn(String) -> UrlError| make(url.to_owned());
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| err(|url| UrlError::NotHttp { url }))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let path = path.split('#').next().unwrap_or_default();
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if authority.contains('@') {
            return Err(err(|url| UrlError::UserInfo { url }));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| err(|url| UrlError::NoHost { url }))?;
            match after {
                "" => (host, None),
                after => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| err(|url| UrlError::BadPort { url }))?,
                    ),
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err(|url| UrlError::NoHost { url }));
        }
        let port = match port {
            None => 80,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| err(|url| UrlError::BadPort { url }))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path,
        })
    }
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("resolving {host}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("connecting to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("sending the request")]
    Send(#[source] io::Error),
    #[error("reading the response")]
    Receive(#[source] io::Error),
    #[error("no HTTP status line in the response: {start:?}")]
    BadResponse { start: String },
    #[error("HTTP status {status}")]
    Status { status: u16 },
    #[error("timed out after {after:?}")]
    TimedOut { after: Duration },
    #[error(transparent)]
    Exec(#[from] crate::process::RunError),
}

/// POSTs `json`; success is a 2xx status line.
async fn post(url: &WebhookUrl, json: &str) -> Result<(), DeliveryError> {
    let addrs = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|source| DeliveryError::Resolve {
            host: url.host.clone(),
            source,
        })?;
    let mut failure = DeliveryError::NoAddress {
        host: url.host.clone(),
    };
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(source) => failure = DeliveryError::Connect { addr, source },
        }
    }
    let mut stream = stream.ok_or(failure)?;

    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: failover/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION"),
        json.len(),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(DeliveryError::Send)?;

    let mut head = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(DeliveryError::Receive)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    match status(&head) {
        Some(status) if (200..300).contains(&status) => Ok(()),
        Some(status) => Err(DeliveryError::Status { status }),
        None => Err(DeliveryError::BadResponse {
            start: String::from_utf8_lossy(&head[..head.len().min(64)]).into_owned(),
        }),
    }
}

/// The status code of `HTTP/1.x NNN ...`.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

/// Runs the command with the event JSON on stdin (and the kind, service and
/// backend in `FAILOVER_EVENT_*`); success is exit 0. At the time limit its
/// whole process group is killed, so helpers it started go too.
async fn exec(
    program: &str,
    args: &[String],
    delivery: &Delivery,
    limit: Duration,
) -> Result<(), DeliveryError> {
    let command: Vec<String> = std::iter::once(program.to_owned())
        .chain(args.iter().cloned())
        .collect();
    let env = [
        ("FAILOVER_EVENT_KIND", delivery.kind.name()),
        (
            "FAILOVER_EVENT_SERVICE",
            delivery.service.as_deref().unwrap_or(""),
        ),
        (
            "FAILOVER_EVENT_BACKEND",
            delivery.backend.as_deref().unwrap_or(""),
        ),
    ];
    crate::process::run(&command, &env, Some(delivery.json.as_bytes()), limit).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        path::PathBuf,
        sync::atomic::{AtomicU32, Ordering},
        time::Instant,
    };

    use serde_json::Value;
    use tokio::{net::TcpListener, sync::mpsc::UnboundedReceiver};

    use super::*;
    use crate::events::EventBus;

    /// A request a test receiver got.
    #[derive(Debug)]
    struct Request {
        head: String,
        body: Vec<u8>,
    }

    impl Request {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("a JSON body")
        }
    }

    /// A webhook receiver on 127.0.0.1 for at most 64 connections. It answers
    /// the n-th request (0-based) with `answer(n)`, or when that is `None`
    /// keeps the connection open without answering. Every request read is
    /// reported.
    async fn receiver(
        answer: impl Fn(usize) -> Option<u16> + Send + 'static,
    ) -> (String, UnboundedReceiver<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?x=1", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for n in 0..64 {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let status = answer(n);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    let _ = tx.send(request);
                    match status {
                        Some(status) => {
                            let response = format!(
                                "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                            let _ = stream.write_all(response.as_bytes()).await;
                        }
                        None => sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        (url, rx)
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Request> {
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 || data.len() > 65_536 {
                return None;
            }
            data.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(data[..head_end].to_vec()).ok()?;
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))?
            .trim()
            .parse()
            .ok()?;
        while data.len() < head_end + length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&chunk[..n]);
        }
        Some(Request {
            head,
            body: data[head_end..head_end + length].to_vec(),
        })
    }

    fn webhook(url: &str, events: &[EventKind], limit_ms: u64, retries: u32) -> AlertConfig {
        AlertConfig {
            target: AlertTarget::Webhook {
                url: url.to_owned(),
            },
            events: events.to_vec(),
            timeout: Duration::from_millis(limit_ms),
            retries,
        }
    }

    fn exec_alert(script: &str, limit_ms: u64, retries: u32) -> AlertConfig {
        AlertConfig {
            target: AlertTarget::Exec {
                command: vec!["sh".into(), "-c".into(), script.into()],
            },
            events: vec![EventKind::Failover],
            timeout: Duration::from_millis(limit_ms),
            retries,
        }
    }

    fn failover(n: u32) -> Event {
        Event::new(
            EventKind::Failover,
            format!("web: primary -> standby ({n})"),
        )
        .service("web")
        .backend("standby")
        .details(serde_json::json!({ "n": n }))
    }

    /// Starts `run_with` on a fresh bus; returns the bus and the run.
    fn start(
        alerts: Vec<AlertConfig>,
        capacity: usize,
    ) -> (EventBus, tokio::task::JoinHandle<RunStats>) {
        let bus = EventBus::new(64);
        let run = tokio::spawn(run_with(alerts, bus.subscribe(), capacity));
        (bus, run)
    }

    /// Closes the bus and waits (at most `within`) for the run to finish.
    async fn finish(
        bus: EventBus,
        run: tokio::task::JoinHandle<RunStats>,
        within: Duration,
    ) -> RunStats {
        drop(bus);
        timeout(within, run)
            .await
            .expect("alerts finish within their bounds")
            .unwrap()
    }

    async fn next(rx: &mut UnboundedReceiver<Request>, within: Duration) -> Request {
        timeout(within, rx.recv())
            .await
            .expect("a request in time")
            .expect("receiver running")
    }

    fn drain(rx: &mut UnboundedReceiver<Request>) -> Vec<Request> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[tokio::test]
    async fn webhook_receives_the_event_json() {
        let (url, mut requests) = receiver(|_| Some(200)).await;
        let (bus, run) = start(vec![webhook(&url, &[EventKind::Failover], 2000, 0)], 8);
        bus.publish(failover(1));
        let request = next(&mut requests, Duration::from_secs(5)).await;
        assert!(
            request.head.starts_with("POST /hook?x=1 HTTP/1.1\r\n"),
            "{}",
            request.head
        );
        assert!(request.head.contains("Content-Type: application/json\r\n"));
        assert!(request.head.contains("Connection: close\r\n"));
        assert!(request.head.contains("Host: 127.0.0.1:"));
        let json = request.json();
        assert_eq!(json["kind"], "failover");
        assert_eq!(json["service"], "web");
        assert_eq!(json["backend"], "standby");
        assert_eq!(json["details"]["n"], 1);
        let stats = finish(bus, run, Duration::from_secs(5)).await;
        assert_eq!((stats.lagged, stats.dropped), (0, vec![0]));
    }

    #[tokio::test]
    async fn failed_attempts_are_retried_until_success() {
        let (url, mut requests) = receiver(|n| Some(if n < 2 { 500 } else { 200 })).await;
        let (bus, run) = start(vec![webhook(&url, &[EventKind::Failover], 2000, 5)], 8);
        bus.publish(failover(1));
        // 100 ms then 200 ms of backoff; well within 5 s.
        finish(bus, run, Duration::from_secs(5)).await;
        let got = drain(&mut requests);
        assert_eq!(
            got.len(),
            3,
            "two failures, then success, then no more attempts"
        );
        assert!(got.iter().all(|r| r.json()["details"]["n"] == 1));
    }

    #[tokio::test]
    async fn dead_targets_give_up_in_bounds_without_delaying_others() {
        let unreachable = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", listener.local_addr().unwrap())
            // Dropped here: nothing listens on that port any more.
        };
        let (silent, mut silent_requests) = receiver(|_| None).await;
        let (working, mut working_requests) = receiver(|_| Some(204)).await;
        let kinds = [EventKind::Failover];
        let alerts = vec![
            webhook(&unreachable, &kinds, 200, 2),
            webhook(&silent, &kinds, 200, 1),
            webhook(&working, &kinds, 2000, 0),
        ];
        let (bus, run) = start(alerts, QUEUE_CAPACITY);
        let started = Instant::now();
        for n in 0..3 {
            bus.publish(failover(n));
        }
        for n in 0..3 {
            let request = next(&mut working_requests, Duration::from_secs(2)).await;
            assert_eq!(request.json()["details"]["n"], n);
        }
        // The silent receiver needs 3 × (200 + 100 + 200) ms to be given up on.
        let prompt = started.elapsed();
        assert!(
            prompt < Duration::from_millis(1000),
            "working alert waited {prompt:?}"
        );

        // Bounds: unreachable 3 × (100 + 200) ms of backoff; silent 1.5 s.
        finish(bus, run, Duration::from_secs(6)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(1400),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            drain(&mut silent_requests).len(),
            6,
            "two attempts per event"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (silent, mut requests) = receiver(|_| None).await;
        let (bus, run) = start(vec![webhook(&silent, &[EventKind::Failover], 300, 0)], 2);
        for n in 0..6 {
            bus.publish(failover(n));
        }
        // At most one in flight and two queued, 300 ms each.
        let stats = finish(bus, run, Duration::from_secs(5)).await;
        let delivered = drain(&mut requests).len() as u64;
        assert!(stats.dropped[0] >= 3, "{stats:?}");
        assert_eq!(delivered + stats.dropped[0], 6, "{stats:?}");
    }

    #[tokio::test]
    async fn only_listed_kinds_are_delivered() {
        let (url, mut requests) = receiver(|_| Some(200)).await;
        let (bus, run) = start(vec![webhook(&url, &[EventKind::Failover], 2000, 0)], 8);
        bus.publish(Event::new(EventKind::BackendUp, "up").backend("primary"));
        bus.publish(failover(1));
        bus.publish(Event::new(EventKind::AgentStart, "started"));
        bus.publish(Event::new(EventKind::Operation, "drain"));
        finish(bus, run, Duration::from_secs(5)).await;
        let got = drain(&mut requests);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].json()["kind"], "failover");
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "failover-alerts-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn exec_gets_the_json_on_stdin_and_is_retried_and_killed() {
        let dir = TempDir::new();
        let out = dir.0.join("event.json");
        let attempts = dir.0.join("attempts");
        let alerts = vec![
            exec_alert(&format!("cat > '{}'", out.display()), 5000, 0),
            exec_alert(
                &format!(
                    "echo \"$FAILOVER_EVENT_KIND\" >> '{}'; exit 3",
                    attempts.display()
                ),
                5000,
                2,
            ),
            // Killed at the time limit, its child `sleep` with it.
            exec_alert("sleep 30 & wait", 200, 0),
        ];
        let (bus, run) = start(alerts, 8);
        let started = Instant::now();
        bus.publish(failover(4));
        bus.publish(Event::new(EventKind::BackendDown, "not alerted"));
        finish(bus, run, Duration::from_secs(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        let json: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(json["kind"], "failover");
        assert_eq!(json["details"]["n"], 4);
        let tries = std::fs::read_to_string(&attempts).unwrap();
        assert_eq!(tries.lines().collect::<Vec<_>>(), ["failover"; 3]);
    }

    #[test]
    fn webhook_urls_parse() {
        let url = WebhookUrl::parse("http://127.0.0.1:8080/hook?a=b").unwrap();
        assert_eq!(
            url,
            WebhookUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                authority: "127.0.0.1:8080".into(),
                path: "/hook?a=b".into(),
            }
        );
        let url = WebhookUrl::parse("http://alerts.example").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("alerts.example", 80, "/")
        );
        let url = WebhookUrl::parse("http://[::1]:9000?x#frag").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 9000, "/?x")
        );
        assert_eq!(url.authority, "[::1]:9000");
        for bad in [
            "https://x/",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:70000",
            "http://u:p@h/",
            "http://[::1/",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines_and_backoff() {
        assert_eq!(status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(status(b"HTTP/1.1 20"), None);
        assert_eq!(status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status(b""), None);
        let ms = |n| backoff(n).as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(4), ms(5), ms(31), ms(40)],
            [100, 200, 400, 1600, 2000, 2000, 2000]
        );
    }
}
