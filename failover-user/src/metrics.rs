//! The Prometheus endpoint: `GET /metrics` in text exposition format 0.0.4.
//!
//! Agent-side metrics (health, probes, failovers) come from the telemetry
//! snapshot; data-path counters are read from the pinned maps on each scrape,
//! so they are right even across an agent restart. When the maps cannot be
//! opened (the agent is still loading them, or they were detached) the scrape
//! still answers, with `failover_datapath_up 0` and the agent-side metrics.
//!
//! The server is deliberately small: one request per connection, each
//! connection in its own task, requests read under a size limit and a
//! deadline, a cap on concurrent connections. A slow or hostile client costs
//! one task for at most [`CONNECTION_DEADLINE`].

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use failover_common::{
    CONNTRACK_ENTRIES, Counter, TrafficStats,
    stats::{VERDICT_NAMES, reason},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Mutex, Semaphore},
    task::JoinSet,
    time::timeout,
};
use tracing::{debug, info, warn};

use crate::{
    error::DataplaneError,
    maps::{Conntrack, Counters, PinDir},
    telemetry::{BackendView, LATENCY_BUCKETS, ServiceView, Snapshot, Telemetry},
};

/// Largest request head (request line and headers) read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head (Prometheus sends it at
/// once; idle connections must not hold slots long).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a connection may live in all, response included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once; further ones wait in the listen backlog.
/// Hundreds of idle ones (a misbehaving local client) still leave room for
/// a scrape, which then never waits behind them.
pub const MAX_CONNECTIONS: usize = 512;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Data-path counters read from the pinned maps for one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatapathCounters {
    /// Indexed by XDP action, named by [`VERDICT_NAMES`].
    pub verdicts: Vec<Counter>,
    /// Indexed by `stats::reason`.
    pub reasons: Vec<Counter>,
    /// By backend id.
    pub backends: BTreeMap<u32, TrafficStats>,
    /// By service id.
    pub services: BTreeMap<u32, TrafficStats>,
    /// Entries in `FO_CONNTRACK` (two per flow).
    pub conntrack_entries: u64,
}

impl DatapathCounters {
    /// Reads the counters of the services and backends in `snapshot` from the
    /// maps pinned under `pin_dir`. Blocking (bpf syscalls; the conntrack
    /// count walks the whole table): call from a blocking thread.
    pub fn read(pin_dir: &Path, snapshot: &Snapshot) -> Result<Self, DataplaneError> {
        let counters = Counters::open(&mut PinDir(pin_dir))?;
        let conntrack = Conntrack::open(&mut PinDir(pin_dir))?;
        let mut backends = BTreeMap::new();
        let mut services = BTreeMap::new();
        for service in &snapshot.services {
            services.insert(service.id, counters.service(service.id)?);
            for backend in &service.backends {
                backends.insert(backend.id, counters.backend(backend.id)?);
            }
        }
        Ok(Self {
            verdicts: counters.verdicts()?,
            reasons: counters.reasons()?,
            backends,
            services,
            conntrack_entries: conntrack.count(),
        })
    }
}

/// Binds `listen` and serves `GET /metrics` until `shutdown` completes.
pub async fn serve(
    listen: SocketAddr,
    telemetry: Telemetry,
    pin_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    info!(listen = %listener.local_addr()?, "metrics endpoint listening");
    serve_listener(listener, telemetry, pin_dir, shutdown).await
}

/// Serves `GET /metrics` on an already bound listener until `shutdown`
/// completes; connections still open then are closed.
pub async fn serve_listener(
    listener: TcpListener,
    telemetry: Telemetry,
    pin_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let scraper = Arc::new(Scraper {
        telemetry,
        pin_dir,
        datapath_read: Mutex::new(()),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: pause instead of spinning.
                    warn!(cause = %err, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let scraper = scraper.clone();
        connections.spawn(async move {
            let _permit = permit;
            match timeout(CONNECTION_DEADLINE, scraper.handle(stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => debug!(%peer, cause = %err, "metrics connection failed"),
                Err(_) => debug!(%peer, "metrics connection closed at its deadline"),
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}

struct Scraper {
    telemetry: Telemetry,
    pin_dir: PathBuf,
    /// One map walk at a time, however many scrapes arrive together.
    datapath_read: Mutex<()>,
}

impl Scraper {
    async fn handle(&self, mut stream: TcpStream) -> io::Result<()> {
        let response = match timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
            Err(_) => Response::text(408, "Request Timeout", "request timed out\n"),
            Ok(Err(HeadError::TooLarge)) => Response::text(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            ),
            Ok(Err(HeadError::Closed)) => return Ok(()),
            Ok(Err(HeadError::Io(err))) => return Err(err),
            Ok(Ok(head)) => match parse_request_line(&head) {
                None => Response::text(400, "Bad Request", "bad request\n"),
                Some((_, path)) if path != "/metrics" => {
                    Response::text(404, "Not Found", "not found; try /metrics\n")
                }
                Some(("GET", _)) => Response::metrics(self.scrape().await, false),
                Some(("HEAD", _)) => Response::metrics(self.scrape().await, true),
                Some(_) => Response::text(405, "Method Not Allowed", "use GET\n"),
            },
        };
        stream.write_all(&response.into_bytes()).await?;
        stream.shutdown().await
    }

    async fn scrape(&self) -> String {
        let snapshot = self.telemetry.snapshot();
        let datapath = {
            let _one_at_a_time = self.datapath_read.lock().await;
            let pin_dir = self.pin_dir.clone();
            let wanted = snapshot.clone();
            tokio::task::spawn_blocking(move || DatapathCounters::read(&pin_dir, &wanted)).await
        };
        let datapath = match datapath {
            Ok(Ok(counters)) => Some(counters),
            Ok(Err(err)) => {
                debug!(pin_dir = %self.pin_dir.display(), cause = %err, "data-path counters unavailable");
                None
            }
            Err(err) => {
                warn!(cause = %err, "reading data-path counters panicked");
                None
            }
        };
        render(&snapshot, datapath.as_ref())
    }
}

enum HeadError {
    TooLarge,
    Closed,
    Io(io::Error),
}

/// Reads up to the blank line ending the request head, at most
/// [`MAX_REQUEST_BYTES`]. A request body, if any, is ignored.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&head[scan_from..], b"\r\n\r\n") {
            head.truncate(scan_from + end);
            return Ok(head);
        }
        if head.len() >= MAX_REQUEST_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `(method, path without query)` of an HTTP/1.x request line.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Some((method, path))
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
        }
    }

    fn metrics(body: String, head_only: bool) -> Self {
        Self {
            status: 200,
            reason: "OK",
            content_type: CONTENT_TYPE,
            body,
            head_only,
        }
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The exposition text for one scrape: agent-side metrics from `snapshot`,
/// data-path counters from `datapath` (`None`: maps unavailable).
pub fn render(snapshot: &Snapshot, datapath: Option<&DatapathCounters>) -> String {
    let mut out = Exposition::default();

    out.family(
        "failover_agent_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
    );
    out.sample(
        "failover_agent_uptime_seconds",
        &[],
        snapshot.started_seconds_ago,
    );

    out.family(
        "failover_datapath_up",
        "gauge",
        "1 if the pinned data-path maps could be read for this scrape.",
    );
    out.sample("failover_datapath_up", &[], u8::from(datapath.is_some()));

    render_agent(&mut out, snapshot);
    if let Some(datapath) = datapath {
        render_datapath(&mut out, snapshot, datapath);
    }

    out.family(
        "failover_conntrack_capacity",
        "gauge",
        "Connection-tracking entries the table holds (two per flow).",
    );
    out.sample("failover_conntrack_capacity", &[], CONNTRACK_ENTRIES);
    out.text
}

/// `service`, `backend` and `address` of one backend.
type BackendLabels<'a> = [(&'static str, &'a str); 3];

/// Every backend with its service and the labels naming it.
fn backends(
    snapshot: &Snapshot,
) -> impl Iterator<Item = (&ServiceView, &BackendView, BackendLabels<'_>)> {
    snapshot.services.iter().flat_map(|service| {
        service.backends.iter().map(move |backend| {
            let labels = [
                ("service", service.name.as_str()),
                ("backend", backend.name.as_str()),
                ("address", backend.address.as_str()),
            ];
            (service, backend, labels)
        })
    })
}

fn render_agent(out: &mut Exposition, snapshot: &Snapshot) {
    out.family(
        "failover_service_active_backends",
        "gauge",
        "Backends of the service that take new flows now.",
    );
    for service in &snapshot.services {
        out.sample(
            "failover_service_active_backends",
            &[("service", &service.name)],
            service.active.len(),
        );
    }

    out.family(
        "failover_backend_healthy",
        "gauge",
        "1 if the backend is healthy by its probes (rise/fall applied).",
    );
    for (_, backend, labels) in backends(snapshot) {
        out.sample(
            "failover_backend_healthy",
            &labels,
            u8::from(backend.healthy),
        );
    }

    out.family(
        "failover_backend_active",
        "gauge",
        "1 if the backend takes new flows now.",
    );
    for (service, backend, labels) in backends(snapshot) {
        let active = service.active.contains(&backend.name);
        out.sample("failover_backend_active", &labels, u8::from(active));
    }

    out.family(
        "failover_backend_state",
        "gauge",
        "Data-path state of the backend: 1 for the current one of up, down, draining.",
    );
    for (_, backend, labels) in backends(snapshot) {
        for state in ["up", "down", "draining"] {
            let labels = with(&labels, ("state", state));
            out.sample(
                "failover_backend_state",
                &labels,
                u8::from(backend.state == state),
            );
        }
    }

    out.family(
        "failover_backend_admin_reason",
        "gauge",
        "1 with the reason when the backend's state is not plain health (held, drained, maintenance).",
    );
    for (_, backend, labels) in backends(snapshot) {
        if let Some(reason) = &backend.admin {
            out.sample(
                "failover_backend_admin_reason",
                &with(&labels, ("reason", reason)),
                1u8,
            );
        }
    }

    out.family(
        "failover_probe_results_total",
        "counter",
        "Health probes by result.",
    );
    for (_, backend, labels) in backends(snapshot) {
        let ok = with(&labels, ("result", "ok"));
        out.sample("failover_probe_results_total", &ok, backend.probe.ok_total);
        let failed = with(&labels, ("result", "failed"));
        out.sample(
            "failover_probe_results_total",
            &failed,
            backend.probe.failed_total,
        );
    }

    out.family(
        "failover_probe_latency_seconds",
        "histogram",
        "Health probe latency, successful and failed probes alike.",
    );
    for (_, backend, labels) in backends(snapshot) {
        let probe = &backend.probe;
        // Cumulative already; the running maximum keeps it so whatever the source.
        let mut cumulative = 0;
        for (count, bound) in probe.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            cumulative = cumulative.max(*count);
            let le = float(bound);
            out.sample(
                "failover_probe_latency_seconds_bucket",
                &with(&labels, ("le", &le)),
                cumulative,
            );
        }
        let total = probe.latency_count.max(cumulative);
        out.sample(
            "failover_probe_latency_seconds_bucket",
            &with(&labels, ("le", "+Inf")),
            total,
        );
        out.sample(
            "failover_probe_latency_seconds_sum",
            &labels,
            probe.latency_sum_seconds,
        );
        out.sample("failover_probe_latency_seconds_count", &labels, total);
    }

    let totals = &snapshot.totals;
    out.family(
        "failover_transitions_total",
        "counter",
        "Health flips of any backend.",
    );
    out.sample("failover_transitions_total", &[], totals.transitions_total);
    out.family(
        "failover_failovers_total",
        "counter",
        "Unplanned switches of new flows away from failed backends.",
    );
    out.sample("failover_failovers_total", &[], totals.failovers_total);
    out.family(
        "failover_failbacks_total",
        "counter",
        "Switches of new flows back to a recovered, more preferred backend.",
    );
    out.sample("failover_failbacks_total", &[], totals.failbacks_total);
    out.family(
        "failover_redirect_watch_up",
        "gauge",
        "1 if the agent counts the frames the kernel drops after the data path redirected them.",
    );
    out.sample(
        "failover_redirect_watch_up",
        &[],
        u8::from(snapshot.egress.watching),
    );
    out.family(
        "failover_redirect_drops_total",
        "counter",
        "Frames the kernel dropped after the data path redirected them to this interface (since the agent started).",
    );
    for egress in &snapshot.egress.interfaces {
        let labels = [("interface", egress.interface.as_str())];
        out.sample(
            "failover_redirect_drops_total",
            &labels,
            egress.redirect_drops,
        );
    }
    out.family(
        "failover_egress_via_stack",
        "gauge",
        "1 if packets for this interface go through the kernel stack because it drops redirected frames.",
    );
    for egress in &snapshot.egress.interfaces {
        let labels = [("interface", egress.interface.as_str())];
        out.sample(
            "failover_egress_via_stack",
            &labels,
            u8::from(egress.via_stack),
        );
    }
    out.family(
        "failover_switches_total",
        "counter",
        "Changes of who takes new flows, planned (operator requests: switchover, drain, maintenance, failback) or unplanned (a failure, a recovery, a timer), with the reason.",
    );
    for count in &totals.switches {
        out.sample(
            "failover_switches_total",
            &[
                ("service", count.service.as_str()),
                ("kind", count.kind),
                ("reason", count.reason),
            ],
            count.total,
        );
    }
    out.family(
        "failover_map_write_failures_total",
        "counter",
        "Data-path map writes that failed; the service is written again until the maps agree.",
    );
    out.sample(
        "failover_map_write_failures_total",
        &[],
        totals.map_write_failures_total,
    );
    out.family(
        "failover_services_out_of_sync",
        "gauge",
        "Services whose maps do not carry the agent's decisions yet (being resynced).",
    );
    out.sample(
        "failover_services_out_of_sync",
        &[],
        totals.services_out_of_sync,
    );
    out.family(
        "failover_last_failover_gap_seconds",
        "gauge",
        "First failed probe to map update, of the last failover (absent before the first).",
    );
    if let Some(gap) = totals.last_failover_gap_seconds {
        out.sample("failover_last_failover_gap_seconds", &[], gap);
    }
}

fn render_datapath(out: &mut Exposition, snapshot: &Snapshot, datapath: &DatapathCounters) {
    const DIRECTIONS: [&str; 2] = ["to_backend", "from_backend"];
    fn split(stats: &TrafficStats) -> [(&'static str, Counter); 2] {
        [
            (DIRECTIONS[0], stats.to_backend),
            (DIRECTIONS[1], stats.from_backend),
        ]
    }

    for (unit, what) in [("packets", "Packets"), ("bytes", "Bytes")] {
        let name = format!("failover_backend_{unit}_total");
        out.family(
            &name,
            "counter",
            &format!("{what} forwarded to the backend and replies from it, by direction."),
        );
        for (_, backend, labels) in backends(snapshot) {
            let Some(stats) = datapath.backends.get(&backend.id) else {
                continue;
            };
            for (direction, counter) in split(stats) {
                let value = if unit == "packets" {
                    counter.packets
                } else {
                    counter.bytes
                };
                out.sample(&name, &with(&labels, ("direction", direction)), value);
            }
        }
    }

    for (unit, what) in [("packets", "Packets"), ("bytes", "Bytes")] {
        let name = format!("failover_service_{unit}_total");
        out.family(
            &name,
            "counter",
            &format!(
                "{what} forwarded to the service's backends and replies from them, by direction."
            ),
        );
        for service in &snapshot.services {
            let Some(stats) = datapath.services.get(&service.id) else {
                continue;
            };
            for (direction, counter) in split(stats) {
                let value = if unit == "packets" {
                    counter.packets
                } else {
                    counter.bytes
                };
                out.sample(
                    &name,
                    &[("service", &service.name), ("direction", direction)],
                    value,
                );
            }
        }
    }

    out.family(
        "failover_verdict_packets_total",
        "counter",
        "Packets by XDP verdict.",
    );
    for (name, counter) in VERDICT_NAMES.iter().zip(&datapath.verdicts) {
        out.sample(
            "failover_verdict_packets_total",
            &[("verdict", name)],
            counter.packets,
        );
    }
    out.family(
        "failover_verdict_bytes_total",
        "counter",
        "Bytes by XDP verdict.",
    );
    for (name, counter) in VERDICT_NAMES.iter().zip(&datapath.verdicts) {
        out.sample(
            "failover_verdict_bytes_total",
            &[("verdict", name)],
            counter.bytes,
        );
    }

    out.family(
        "failover_reason_packets_total",
        "counter",
        "Packets by reason: kind=outcome (exactly one per packet, why it got its verdict) or kind=event (things that happened on the way).",
    );
    for (index, (name, counter)) in reason::NAMES.iter().zip(&datapath.reasons).enumerate() {
        let kind = if index as u32 >= reason::FIRST_EVENT {
            "event"
        } else {
            "outcome"
        };
        out.sample(
            "failover_reason_packets_total",
            &[("reason", name), ("kind", kind)],
            counter.packets,
        );
    }

    out.family(
        "failover_conntrack_entries",
        "gauge",
        "Connection-tracking entries in use (two per flow).",
    );
    out.sample(
        "failover_conntrack_entries",
        &[],
        datapath.conntrack_entries,
    );
}

fn with<'a, const N: usize>(
    labels: &[(&'static str, &'a str); N],
    extra: (&'static str, &'a str),
) -> Vec<(&'static str, &'a str)> {
    let mut all = labels.to_vec();
    all.push(extra);
    all
}

/// A Prometheus float: `+Inf`, `-Inf`, `NaN` or the shortest exact decimal.
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

/// A sample value: integers as such, floats through [`float`].
trait SampleValue {
    fn text(&self) -> String;
}

macro_rules! integer_sample {
    ($($t:ty),*) => {$(
        impl SampleValue for $t {
            fn text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_sample!(u8, u32, u64, usize);

impl SampleValue for f64 {
    fn text(&self) -> String {
        float(*self)
    }
}

/// Text exposition under construction.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a metric family. All its samples must follow before the next.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl SampleValue) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_label_value(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&value.text());
        self.text.push('\n');
    }
}

/// Label values escape `\`, `"` and newline.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::telemetry::{ProbeStats, Totals};

    fn backend(name: &str, id: u32, healthy: bool, state: &str) -> BackendView {
        BackendView {
            name: name.to_owned(),
            id,
            address: format!("198.51.100.{}", 10 + id),
            port: Some(8080),
            tier: id as u8,
            healthy,
            state: state.to_owned(),
            admin: None,
            probe: ProbeStats::default(),
        }
    }

    fn snapshot() -> Snapshot {
        let mut primary = backend("primary", 1, false, "down");
        for ms in [0.3, 0.3, 7.0, 30.0, 3000.0] {
            primary
                .probe
                .record(ms < 1000.0, Duration::from_secs_f64(ms / 1000.0), None);
        }
        let mut standby = backend("stand\"by\\2\nx", 2, true, "draining");
        standby.admin = Some("drained".to_owned());
        Snapshot {
            services: vec![ServiceView {
                name: "web".to_owned(),
                id: 7,
                vip: "203.0.113.10".to_owned(),
                port: 80,
                protocol: "tcp".to_owned(),
                active: vec!["primary".to_owned()],
                switched_to: None,
                backends: vec![primary, standby],
            }],
            totals: Totals {
                transitions_total: 3,
                failovers_total: 1,
                failbacks_total: 0,
                map_write_failures_total: 0,
                services_out_of_sync: 0,
                switches: Vec::new(),
                last_failover_gap_seconds: Some(0.21),
            },
            started_seconds_ago: 12.5,
            egress: Default::default(),
        }
    }

    fn datapath() -> DatapathCounters {
        let stats = |n: u64| TrafficStats {
            to_backend: Counter {
                packets: n,
                bytes: n * 100,
            },
            from_backend: Counter {
                packets: n + 1,
                bytes: n * 200,
            },
        };
        DatapathCounters {
            verdicts: (0..5)
                .map(|i| Counter {
                    packets: i,
                    bytes: i * 60,
                })
                .collect(),
            reasons: (0..reason::COUNT as u64)
                .map(|i| Counter {
                    packets: i,
                    bytes: 0,
                })
                .collect(),
            backends: [(1, stats(10)), (2, stats(20))].into(),
            services: [(7, stats(30))].into(),
            conntrack_entries: 42,
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_owned)
        })
    }

    const PRIMARY: &str = r#"service="web",backend="primary",address="198.51.100.11""#;

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = render(&snapshot(), Some(&datapath()));
        let mut declared = Vec::new();
        for line in lines(&text) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
                declared.push(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(name.starts_with("failover_"), "{line}");
            } else {
                let series = line.split([' ', '{']).next().unwrap();
                let family = declared.last().expect("sample before any TYPE");
                let base = series
                    .strip_suffix("_bucket")
                    .or_else(|| series.strip_suffix("_sum"))
                    .or_else(|| series.strip_suffix("_count"))
                    .filter(|base| base == family)
                    .unwrap_or(series);
                assert_eq!(base, family, "sample {line} outside its family");
            }
        }
        let mut unique = declared.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), declared.len(), "a family declared twice");
        assert!(text.contains("# HELP failover_failovers_total "));
        assert!(text.contains("# TYPE failover_probe_latency_seconds histogram\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn agent_metrics_follow_the_snapshot() {
        let text = render(&snapshot(), Some(&datapath()));
        assert_eq!(value(&text, "failover_datapath_up").as_deref(), Some("1"));
        assert_eq!(
            value(&text, "failover_agent_uptime_seconds").as_deref(),
            Some("12.5")
        );
        assert_eq!(
            value(&text, &format!("failover_backend_healthy{{{PRIMARY}}}")).as_deref(),
            Some("0")
        );
        for (state, expected) in [("up", "0"), ("down", "1"), ("draining", "0")] {
            let series = format!("failover_backend_state{{{PRIMARY},state=\"{state}\"}}");
            assert_eq!(value(&text, &series).as_deref(), Some(expected), "{state}");
        }
        let results = |result: &str| {
            value(
                &text,
                &format!("failover_probe_results_total{{{PRIMARY},result=\"{result}\"}}"),
            )
        };
        assert_eq!(results("ok").as_deref(), Some("4"));
        assert_eq!(results("failed").as_deref(), Some("1"));
        assert_eq!(
            value(&text, "failover_failovers_total").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, "failover_transitions_total").as_deref(),
            Some("3")
        );
        assert_eq!(
            value(&text, "failover_last_failover_gap_seconds").as_deref(),
            Some("0.21")
        );
        assert_eq!(
            value(&text, r#"failover_service_active_backends{service="web"}"#).as_deref(),
            Some("1")
        );
        assert!(text.contains(r#"reason="drained"} 1"#));
        assert_eq!(
            value(&text, "failover_conntrack_capacity").as_deref(),
            Some("262144")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&snapshot(), None);
        let escaped = r#"backend="stand\"by\\2\nx""#;
        assert!(text.contains(escaped), "{text}");
        // The raw newline never reaches the output: every line is a comment or a sample.
        for line in lines(&text) {
            assert!(
                line.starts_with("# ") || line.starts_with("failover_"),
                "broken line {line:?}"
            );
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_equals_count() {
        let text = render(&snapshot(), None);
        let prefix = format!("failover_probe_latency_seconds_bucket{{{PRIMARY},le=\"");
        let buckets: Vec<(String, u64)> = lines(&text)
            .into_iter()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|rest| {
                let (le, count) = rest.split_once("\"} ").unwrap();
                (le.to_owned(), count.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets[0], ("0.0005".to_owned(), 2));
        assert_eq!(buckets[4], ("0.01".to_owned(), 3));
        assert_eq!(buckets[6], ("0.05".to_owned(), 4));
        assert_eq!(buckets[11], ("2.5".to_owned(), 4)); // the 3 s probe is only in +Inf
        let count = value(
            &text,
            &format!("failover_probe_latency_seconds_count{{{PRIMARY}}}"),
        );
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), 5));
        assert_eq!(count.as_deref(), Some("5"));
        let sum: f64 = value(
            &text,
            &format!("failover_probe_latency_seconds_sum{{{PRIMARY}}}"),
        )
        .unwrap()
        .parse()
        .unwrap();
        assert!((sum - 3.0376).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn datapath_counters_are_labelled() {
        let text = render(&snapshot(), Some(&datapath()));
        let series =
            format!("failover_backend_packets_total{{{PRIMARY},direction=\"to_backend\"}}");
        assert_eq!(value(&text, &series).as_deref(), Some("10"));
        let series =
            format!("failover_backend_bytes_total{{{PRIMARY},direction=\"from_backend\"}}");
        assert_eq!(value(&text, &series).as_deref(), Some("2000"));
        let series = r#"failover_service_packets_total{service="web",direction="from_backend"}"#;
        assert_eq!(value(&text, series).as_deref(), Some("31"));
        let series = r#"failover_verdict_bytes_total{verdict="tx"}"#;
        assert_eq!(value(&text, series).as_deref(), Some("180"));
        let series = r#"failover_reason_packets_total{reason="drop_no_backend",kind="outcome"}"#;
        assert_eq!(value(&text, series).as_deref(), Some("15"));
        let series = r#"failover_reason_packets_total{reason="event_repick",kind="event"}"#;
        let expected = failover_common::stats::reason::EVENT_REPICK.to_string();
        assert_eq!(value(&text, series), Some(expected));
        assert_eq!(
            value(&text, "failover_conntrack_entries").as_deref(),
            Some("42")
        );
    }

    #[test]
    fn without_maps_only_agent_metrics_and_datapath_down() {
        let text = render(&snapshot(), None);
        assert_eq!(value(&text, "failover_datapath_up").as_deref(), Some("0"));
        assert!(text.contains("failover_backend_healthy{"));
        for absent in [
            "failover_verdict_",
            "failover_reason_",
            "failover_conntrack_entries",
            "failover_backend_packets",
        ] {
            assert!(!text.contains(absent), "{absent} without maps");
        }
    }

    #[test]
    fn request_lines_parse() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.0"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line(b"GET /metrics"), None);
        assert_eq!(parse_request_line(b"GET /metrics SPDY/3"), None);
        assert_eq!(parse_request_line(b"\xff\xfe"), None);
    }

    async fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let read = async {
            let mut chunk = [0u8; 4096];
            // A reset after the response (the server closed with unread
            // request bytes) ends the read like EOF does.
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                response.extend_from_slice(&chunk[..n]);
            }
        };
        timeout(Duration::from_secs(10), read)
            .await
            .expect("response in time");
        String::from_utf8(response).unwrap()
    }

    #[tokio::test]
    async fn serves_metrics_and_404_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let telemetry = Telemetry::new();
        telemetry.update(|s| *s = snapshot());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let pin_dir = std::env::temp_dir().join("failover-metrics-test-no-such-pin-dir");
        let server = tokio::spawn(serve_listener(listener, telemetry, pin_dir, async {
            let _ = stopped.await;
        }));

        // A client that connects and sends nothing must not hold up the others.
        let _idle = TcpStream::connect(addr).await.unwrap();

        let response = get(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(body.contains("failover_failovers_total 1\n"), "{body}");
        assert!(body.contains("failover_datapath_up 0\n"), "{body}");

        let response = get(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 404 "), "{response}");
        let response = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_BYTES)
        );
        let response = get(addr, huge.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 431 "), "{response}");

        stop.send(()).unwrap();
        timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}
