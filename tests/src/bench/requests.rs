//! TCP request rate through the VIP: many short connections (connect, one
//! request line, the answer, close) from concurrent clients, for
//!
//! - direct: the client talks to the backend's own address, routed by the
//!   edge host's kernel (the limit: no load balancer at all);
//! - ours: the XDP data path (native) on the edge host;
//! - nftables DNAT on the edge host (kernel NAT and conntrack);
//! - HAProxy in TCP mode on the edge host (a proxy: two connections each).
//!
//! All four run on the same namespaces, backend server and client, one
//! after the other, a few rounds each; the veth peers carry the pass
//! program in every case (native redirect into a veth needs one there).

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use failover::{
    AttachMode, BackendSpec, Dataplane, Proto, ServiceSpec,
    lab::topology::{self, BackendLink, LB_CLIENT_ADDR, LB_CLIENT_IF, Topology},
};

use super::{
    Row, Section, Spread,
    killable::KillableServer,
    peers::{self, NsProcess},
};
use crate::{netns::NetNs, pins::PinDir, servers::ask};

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const BACKEND_IF: &str = "lbb0";
/// Concurrent client connections.
const CLIENTS: usize = 16;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// One round of short connections from `CLIENTS` concurrent clients.
pub(super) struct Round {
    pub(super) requests: usize,
    pub(super) errors: usize,
    pub(super) seconds: f64,
    pub(super) latencies_us: Vec<f64>,
}

struct Case {
    name: &'static str,
    rounds: Vec<Round>,
}

impl Case {
    fn rates(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|r| r.requests as f64 / r.seconds)
            .collect()
    }
    fn latency(&self) -> Spread {
        let all: Vec<f64> = self
            .rounds
            .iter()
            .flat_map(|r| r.latencies_us.iter().copied())
            .collect();
        Spread::of(&all)
    }
    fn errors(&self) -> usize {
        self.rounds.iter().map(|r| r.errors).sum()
    }
    fn requests(&self) -> usize {
        self.rounds.iter().map(|r| r.requests).sum()
    }
}

pub fn run(quick: bool) -> Section {
    let (rounds, length) = if quick {
        (1, Duration::from_secs(1))
    } else {
        (3, Duration::from_secs(3))
    };
    let lab = Topology::build(
        "rqclient",
        "rqlb",
        &[BackendLink {
            role: "rqbackend",
            lb_if: BACKEND_IF,
        }],
    );
    let backend = topology::backend_addr(0);
    lab.client.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        &LB_CLIENT_ADDR.to_string(),
    ]);
    // Short connections by the hundred thousand: reuse TIME_WAIT ports.
    for ns in [&lab.client, &lab.lb] {
        ns.sysctl("net/ipv4/tcp_tw_reuse", "1");
        ns.sysctl("net/ipv4/ip_local_port_range", "1024 65000");
    }
    lab.lb.disable_tx_checksum(BACKEND_IF);
    let peer_pins = PinDir::new();
    let mut peers_dp = Dataplane::load(peer_pins.path()).expect("load the pass program");
    lab.attach_pass_on_peers(&mut peers_dp)
        .expect("pass program on the veth peers");
    let _server =
        KillableServer::start(&lab.backends[0], "backend", BACKEND_PORT, None, CLIENTS + 4);

    let paths = [Path::Direct, Path::Nft, Path::Ours, Path::Haproxy];
    let mut cases: Vec<Case> = paths
        .iter()
        .map(|p| Case {
            name: p.name(),
            rounds: Vec::new(),
        })
        .collect();
    let mut failures = Vec::new();
    // Rounds interleave the paths, so a slow phase of a noisy machine is
    // shared rather than landing on one path.
    for _ in 0..rounds {
        for (path, case) in paths.iter().zip(&mut cases) {
            let active = Active::set_up(*path, &lab, backend);
            case.rounds
                .push(load(&lab.client, path.target(backend), length));
            if let Some(problem) = active.check() {
                failures.push(problem);
            }
        }
    }
    for case in &cases {
        if case.requests() == 0 || case.errors() * 100 > case.requests() {
            failures.push(format!(
                "{}: {} requests, {} errors: the path does not work",
                case.name,
                case.requests(),
                case.errors()
            ));
        }
    }
    render(&cases, rounds, length, failures)
}

#[derive(Clone, Copy)]
enum Path {
    Direct,
    Nft,
    Ours,
    Haproxy,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct to the backend (no load balancer)",
            Self::Nft => "nftables DNAT",
            Self::Ours => "failover XDP (native)",
            Self::Haproxy => "HAProxy 2.6 (mode tcp)",
        }
    }

    fn target(self, backend: Ipv4Addr) -> SocketAddr {
        match self {
            Self::Direct => (backend, BACKEND_PORT).into(),
            _ => (VIP, PORT).into(),
        }
    }
}

/// One path set up on the edge host; `Drop` takes it down again.
struct Active<'a> {
    path: Path,
    lab: &'a Topology,
    ours: Option<(Dataplane, PinDir)>,
    haproxy: Option<(NsProcess, std::path::PathBuf)>,
}

impl<'a> Active<'a> {
    fn set_up(path: Path, lab: &'a Topology, backend: Ipv4Addr) -> Self {
        let mut active = Self {
            path,
            lab,
            ours: None,
            haproxy: None,
        };
        match path {
            Path::Direct => {}
            Path::Nft => peers::apply_nft(
                &lab.lb,
                &peers::dnat_ruleset(
                    "tcp",
                    &VIP.to_string(),
                    PORT,
                    &backend.to_string(),
                    BACKEND_PORT,
                ),
            ),
            Path::Ours => active.ours = Some(attach_ours(lab, backend)),
            Path::Haproxy => active.haproxy = Some(start_haproxy(lab, backend)),
        }
        active
    }

    /// After the load: whether the path really carried it.
    fn check(&self) -> Option<String> {
        let (dataplane, _) = self.ours.as_ref()?;
        (forwarded_packets(dataplane) == 0)
            .then(|| format!("{}: the data path forwarded nothing", self.path.name()))
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        match self.path {
            Path::Direct => {}
            Path::Nft => peers::flush_nft(&self.lab.lb),
            Path::Ours => {
                if let Some((dataplane, pins)) = self.ours.take() {
                    // Dropping the data path detaches it.
                    drop(dataplane);
                    let _ = failover::dataplane::remove_pins(pins.path());
                }
            }
            Path::Haproxy => {
                if let Some((process, dir)) = self.haproxy.take() {
                    drop(process);
                    let _ = std::fs::remove_dir_all(dir);
                }
                self.lab
                    .lb
                    .ip(&["addr", "del", &format!("{VIP}/32"), "dev", "lo"]);
            }
        }
    }
}

fn attach_ours(lab: &Topology, backend: Ipv4Addr) -> (Dataplane, PinDir) {
    let pins = PinDir::new();
    let mut ours = Dataplane::load(pins.path()).expect("load the data path");
    for interface in [LB_CLIENT_IF, BACKEND_IF] {
        lab.lb
            .run(|| ours.attach(interface, AttachMode::Native))
            .expect("attach the data path");
    }
    ours.add_service(
        ServiceSpec::new(VIP, PORT, Proto::Tcp),
        &[BackendSpec::new(backend).port(BACKEND_PORT)],
    )
    .expect("add the service");
    (ours, pins)
}

fn start_haproxy(lab: &Topology, backend: Ipv4Addr) -> (NsProcess, std::path::PathBuf) {
    // HAProxy listens on the VIP itself.
    lab.lb
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    let dir = std::env::temp_dir().join(format!("fo-bench-rq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("haproxy dir");
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 10s\n  \
             timeout server 10s\n\nfrontend web\n  bind {VIP}:{PORT}\n  default_backend web\n\n\
             backend web\n  server backend {backend}:{BACKEND_PORT}\n"
        ),
    )
    .expect("haproxy config");
    let mut process = NsProcess::start(
        &lab.lb,
        "haproxy",
        &["-db", "-f", config.to_str().expect("utf-8 path")],
        &dir.join("haproxy.log"),
    );
    wait_listening(&lab.client, (VIP, PORT).into());
    process.assert_running();
    (process, dir)
}

/// Packets our data path redirected or bounced, from its verdict counters.
fn forwarded_packets(dataplane: &Dataplane) -> u64 {
    use failover_common::stats::action::{XDP_REDIRECT, XDP_TX};
    dataplane
        .counters()
        .verdicts()
        .map(|v| v[XDP_TX as usize].packets + v[XDP_REDIRECT as usize].packets)
        .unwrap_or(0)
}

/// Waits (bounded) until something accepts connections on `target`.
fn wait_listening(client: &NetNs, target: SocketAddr) {
    client.run(|| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&target, Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// [`CLIENTS`] threads in the client namespace doing short connections
/// back to back for `length`.
/// `CLIENTS` clients in `client`, each connecting to `target` for one
/// request back to back, for `length`.
pub(super) fn load(client: &NetNs, target: SocketAddr, length: Duration) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let results: Vec<(usize, usize, Vec<f64>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let stop = stop.clone();
                scope.spawn(move || {
                    client.enter();
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < length {
                        let begun = Instant::now();
                        match one_request(target) {
                            Ok(()) => latencies.push(begun.elapsed().as_secs_f64() * 1e6),
                            Err(_) => errors += 1,
                        }
                    }
                    (latencies.len(), errors, latencies)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("client thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    Round {
        requests: results.iter().map(|r| r.0).sum(),
        errors: results.iter().map(|r| r.1).sum(),
        seconds,
        latencies_us: results.into_iter().flat_map(|r| r.2).collect(),
    }
}

fn one_request(target: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&target, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_nodelay(true)?;
    ask(&mut stream).map(|_| ())
}

fn render(cases: &[Case], rounds: usize, length: Duration, failures: Vec<String>) -> Section {
    let direct = Spread::of(&cases[0].rates()).median;
    let mut md = format!(
        "{CLIENTS} concurrent clients, each doing connect → one request line → answer → close \
         back to back; {rounds} round(s) of {} s per case; latency is per request (connect to \
         answer). Same namespaces, backend server and client for every case.\n\n\
         | path | requests/s median | min–max | × direct | p50 µs | p99 µs | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        length.as_secs()
    );
    let mut json = Vec::new();
    for case in cases {
        let rate = Spread::of(&case.rates());
        let latency = case.latency();
        md += &format!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.2} | {:.0} | {:.0} | {} of {} |\n",
            case.name,
            rate.median,
            rate.min,
            rate.max,
            rate.median / direct,
            latency.median,
            latency.p99,
            case.errors(),
            case.requests()
        );
        json.push(serde_json::json!({
            "path": case.name, "requests_per_s": case.rates(), "median_rps": rate.median,
            "ratio_to_direct": rate.median / direct, "p50_us": latency.median, "p99_us": latency.p99,
            "errors": case.errors(), "requests": case.requests(),
        }));
    }
    let find = |prefix: &str| cases.iter().find(|c| c.name.starts_with(prefix));
    let mut summary = Vec::new();
    if let Some(ours) = find("failover") {
        let ours_rate = Spread::of(&ours.rates()).median;
        let ours_p99 = ours.latency().p99;
        summary.push(Row {
            measure: "TCP requests/s through the VIP (short connections)".into(),
            ours: format!("{ours_rate:.0}"),
            reference: format!("direct to backend: {direct:.0}"),
            ratio: format!("{:.2}x", ours_rate / direct),
        });
        for (prefix, label) in [("nftables", "nftables DNAT"), ("HAProxy", "HAProxy tcp")] {
            if let Some(peer) = find(prefix) {
                let peer_rate = Spread::of(&peer.rates()).median;
                summary.push(Row {
                    measure: format!("TCP requests/s, ours vs {label}"),
                    ours: format!("{ours_rate:.0}"),
                    reference: format!("{label}: {peer_rate:.0}"),
                    ratio: format!("{:.2}x", ours_rate / peer_rate),
                });
                summary.push(Row {
                    measure: format!("TCP request p99 latency, ours vs {label}"),
                    ours: format!("{ours_p99:.0} µs"),
                    reference: format!("{label}: {:.0} µs", peer.latency().p99),
                    ratio: format!("{:.2}x", ours_p99 / peer.latency().p99),
                });
            }
        }
    }
    Section {
        title: "TCP request rate through the VIP",
        markdown: md,
        json: serde_json::Value::Array(json),
        summary,
        failures,
    }
}
