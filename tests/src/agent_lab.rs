//! The lab of the agent tests: the real `failover run` process on an edge
//! host between a client and an active-passive pair of backends.
//!
//! ```text
//!   client                 lb (agent: XDP on lbc, lbp, lbs)             backends
//!   eth0 192.0.2.2/24 ──── lbc 192.0.2.1/24
//!                          lbp 198.51.100.1/28  ──── eth0 198.51.100.2/28   primary (tier 0)
//!                          lbs 198.51.100.17/28 ──── eth0 198.51.100.18/28  standby (tier 1)
//!
//!   VIP 203.0.113.10 tcp :80 → backends :8080 (a [`BackendServer`] answering its name)
//!   health endpoint on :8081 (a [`HealthServer`] the test turns up, down or slow)
//! ```
//!
//! [`AgentLab::start_layout`] builds the same lab with any number of
//! backends (a [`Layout`]: names, tiers, weights, backend `i` behind the
//! lb's `lbb<i>` at [`topology::backend_addr`]`(i)`) and extra keys for the
//! service (redundancy mode, quorum, dead-flow policy).
//!
//! The namespaces and links are the library's edge topology
//! ([`failover::lab::topology`]). The agent runs as a child process whose
//! network namespace is the lb's ([`AgentProcess`]: `setns` in `pre_exec`,
//! not `ip netns exec`, which would hide bpffs); it attaches XDP to the lb's
//! interfaces itself, through links pinned in the test's own pin directory.
//! The test attaches the pass program to the veth peers (native
//! XDP_TX/redirect into a veth needs one there) from its own data path with
//! its own pin directory, and turns transmit checksum offload off on every
//! sender, the lb included (ENVIRONMENT.md, "veth + XDP pitfalls").
//!
//! Drop order: the agent process (SIGTERM, then SIGKILL, always reaped), then
//! its pins (which detach its pinned links), then servers, the peers' data
//! path, and last the namespaces. The agent's log goes to a file (never a
//! pipe: a dropped pipe kills it with EPIPE and leaves pins behind).

use std::{
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use failover::{
    Dataplane,
    lab::{
        agent::{AgentProcess, Stopped},
        load::{self, Failed, Load, LongLived, Plan},
        netns::NsFd,
        topology::{self, BackendLink, Topology},
    },
};

pub use crate::servers::ask;
use crate::{netns::NetNs, pins::PinDir, servers::BackendServer};

pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SERVICE_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;
pub const BACKEND_UDP_PORT: u16 = 5353;
pub const HEALTH_PORT: u16 = 8081;

pub const PRIMARY: usize = 0;
pub const STANDBY: usize = 1;

/// How long the agent gets to start (load, attach, first log line).
const AGENT_START: Duration = Duration::from_secs(15);
/// Every thread of the lab gives up after this, whatever the test does.
const MAX_LIFETIME: Duration = Duration::from_secs(120);

/// One backend host of the lab.
pub struct Host {
    pub name: &'static str,
    pub addr: Ipv4Addr,
    /// The lb's interface toward this backend.
    pub lb_side: &'static str,
    tier: u8,
}

pub const HOSTS: [Host; 2] = [
    Host {
        name: "primary",
        addr: topology::backend_addr(PRIMARY),
        lb_side: "lbp",
        tier: 0,
    },
    Host {
        name: "standby",
        addr: topology::backend_addr(STANDBY),
        lb_side: "lbs",
        tier: 1,
    },
];

/// A backend of a lab laid out by a [`Layout`] (any number of backends).
#[derive(Clone, Debug)]
pub struct LabBackend {
    /// What its server answers, and its name in the config.
    pub name: String,
    pub tier: u8,
    /// `weight` in the config; `None` leaves the key out (the default).
    pub weight: Option<u32>,
    /// The lb's interface toward it.
    pub lb_side: String,
    /// Backend `i`'s address, [`topology::backend_addr`].
    pub addr: Ipv4Addr,
}

/// The backends of a lab's `web` service (in backend order: backend `i`
/// lives in `lab.backends[i]`, served by `lab.servers[i]` and
/// `lab.health[i]`) and extra keys for its `[[services]]` table.
#[derive(Clone, Debug)]
pub struct Layout {
    pub backends: Vec<LabBackend>,
    /// Lines added to the web service's table before `[services.probe]`
    /// (`mode`, `min_healthy`, `quorum_policy`, `dead_flows`, `table_size`).
    pub service_keys: String,
    /// Probe interval and timeout (default 100 ms and 50 ms).
    pub probe_timing: (Duration, Duration),
    /// Veth links as `ip link add` leaves them: no XDP program on the
    /// peers (so no NAPI there for redirected frames, GRO being off) and,
    /// with `offload_on`, transmit checksum offload on at the senders.
    pub plain_veth: bool,
    pub offload_on: bool,
    /// The lb's interfaces' XDP mode (`native` unless set).
    pub mode: &'static str,
}

impl Layout {
    /// [`HOSTS`]: primary (tier 0) behind `lbp`, standby (tier 1) behind
    /// `lbs` — what [`AgentLab::start`] builds.
    pub fn primary_standby() -> Self {
        Self {
            backends: HOSTS
                .iter()
                .map(|host| LabBackend {
                    name: host.name.to_owned(),
                    tier: host.tier,
                    weight: None,
                    lb_side: host.lb_side.to_owned(),
                    addr: host.addr,
                })
                .collect(),
            service_keys: String::new(),
            probe_timing: DEFAULT_PROBE_TIMING,
            plain_veth: false,
            offload_on: false,
            mode: "native",
        }
    }

    /// One backend per `(name, tier)`, backend `i` behind the lb's
    /// interface `lbb<i>` (at most 15 backends).
    pub fn tiers(backends: &[(&str, u8)]) -> Self {
        assert!(
            backends.len() < 15,
            "the topology numbers at most 15 backends"
        );
        Self {
            backends: backends
                .iter()
                .enumerate()
                .map(|(i, (name, tier))| LabBackend {
                    name: (*name).to_owned(),
                    tier: *tier,
                    weight: None,
                    lb_side: format!("lbb{i}"),
                    addr: topology::backend_addr(i),
                })
                .collect(),
            service_keys: String::new(),
            probe_timing: DEFAULT_PROBE_TIMING,
            plain_veth: false,
            offload_on: false,
            mode: "native",
        }
    }

    /// Adds a line to the web service's table (e.g. `mode = "n_plus_one"`).
    pub fn key(mut self, line: &str) -> Self {
        self.service_keys += line;
        self.service_keys.push('\n');
        self
    }

    /// Probes every `interval` with `timeout` (fall 3, rise 2 stay).
    pub fn probe_timing(mut self, interval: Duration, timeout: Duration) -> Self {
        self.probe_timing = (interval, timeout);
        self
    }

    /// Veth links as `ip link add` leaves them: no XDP program on the peers
    /// and (with `offload_on`) transmit checksum offload on everywhere.
    pub fn plain_veth(mut self, offload_on: bool) -> Self {
        self.plain_veth = true;
        self.offload_on = offload_on;
        self
    }

    /// Transmit checksum offload left on at every sender (local sockets
    /// then send partial checksums), the peers still set up for native
    /// redirects.
    pub fn offload_on(mut self) -> Self {
        self.offload_on = true;
        self
    }

    /// Attaches the agent's XDP in this mode (`native`, `skb`, `auto`).
    pub fn mode(mut self, mode: &'static str) -> Self {
        self.mode = mode;
        self
    }

    /// Sets a backend's `weight`.
    pub fn weight(mut self, name: &str, weight: u32) -> Self {
        let backend = self
            .backends
            .iter_mut()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name} in the layout"));
        backend.weight = Some(weight);
        self
    }

    /// Index of the backend called `name`.
    pub fn index(&self, name: &str) -> usize {
        self.backends
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name} in the layout"))
    }
}

/// The health probe the agent runs against every backend.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// TCP connect to `port`.
    Tcp { port: u16 },
    /// `GET /healthz` on `port`, status 200-399.
    Http { port: u16 },
}

#[derive(Clone, Copy, Debug)]
pub enum Failback {
    Auto(Duration),
    Manual,
}

/// Probe interval and timeout unless a [`Layout`] says otherwise.
const DEFAULT_PROBE_TIMING: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_millis(50));

/// The longest the lab's default probes take to declare a failure: fall (3)
/// intervals, a timeout and the 10 % jitter.
pub const DETECTION: Duration = Duration::from_millis(3 * 100 + 50 + 10);
/// How long a failover may take in a test: a small multiple of detection
/// (sampling, the agent's reaction and scheduling on a loaded 2-core
/// machine), so that a failover twice as slow as designed fails the test.
pub const FAILOVER_BOUND: Duration = Duration::from_millis(DETECTION.as_millis() as u64 * 5 / 2);

/// What a lab's agent is configured with. Probes run every 100 ms with a
/// 50 ms timeout ([`Layout::probe_timing`] changes that), fall 3, rise 2.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub probe: Probe,
    pub failback: Failback,
}

/// Field order is drop order (after [`AgentLab`]'s own `Drop` stopped the
/// agent and removed its pins).
pub struct AgentLab {
    agent: Option<AgentProcess>,
    pub health: Vec<HealthServer>,
    pub servers: Vec<Option<BackendServer>>,
    _peers: Dataplane,
    pins: PinDir,
    _peer_pins: PinDir,
    pub client: NetNs,
    pub lb: NetNs,
    pub backends: Vec<NetNs>,
    dir: PathBuf,
    config: PathBuf,
    layout: Layout,
    pid_file: PathBuf,
    log: PathBuf,
    /// Where in the log the current agent process started writing.
    log_start: u64,
    /// Whether a failure message already carried the log ([`Self::diag`]).
    log_shown: std::cell::Cell<bool>,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl AgentLab {
    /// Builds the namespaces, starts the servers and the agent, and waits
    /// until new flows reach the primary.
    pub fn start(options: Options) -> Self {
        Self::start_with(options, |_| String::new())
    }

    /// Like [`Self::start`], with `extra(lab temp dir)` appended to the
    /// agent's configuration: more `[[services]]`, `[metrics]`, `[journal]`,
    /// `[[alerts]]` (the generated file ends with the web service's last
    /// backend, so any table may follow).
    pub fn start_with(options: Options, extra: impl FnOnce(&Path) -> String) -> Self {
        Self::start_layout(options, Layout::primary_standby(), extra)
    }

    /// Like [`Self::start_with`], with the backends (names, tiers, weights)
    /// and extra service keys of `layout`. Every backend gets a
    /// [`BackendServer`] on [`BACKEND_PORT`] and a [`HealthServer`] on
    /// [`HEALTH_PORT`]; returns once new flows reach the layout's first
    /// backend.
    fn build(options: Options, layout: Layout, extra: impl FnOnce(&Path) -> String) -> Self {
        crate::require_root();
        assert!(!layout.backends.is_empty(), "a lab needs a backend");
        let links: Vec<BackendLink<'_>> = layout
            .backends
            .iter()
            .map(|backend| BackendLink {
                role: "agbackend",
                lb_if: &backend.lb_side,
            })
            .collect();
        let net = Topology::build("agclient", "aglb", &links);
        if layout.offload_on {
            for ns in net.namespaces() {
                for interface in ns.interfaces() {
                    ns.enable_tx_checksum(&interface);
                }
            }
        } else {
            for backend in &layout.backends {
                // The agent's probes are generated on the lb.
                net.lb.disable_tx_checksum(&backend.lb_side);
            }
        }

        let peer_pins = PinDir::new();
        let mut peers = Dataplane::load(peer_pins.path()).expect("load the pass program");
        if !layout.plain_veth {
            net.attach_pass_on_peers(&mut peers)
                .expect("attach the pass program to a veth peer");
        }
        let Topology {
            client,
            lb,
            backends,
        } = net;
        let servers = layout
            .backends
            .iter()
            .zip(&backends)
            .map(|(backend, ns)| {
                Some(BackendServer::start(
                    ns,
                    &backend.name,
                    BACKEND_PORT,
                    BACKEND_UDP_PORT,
                ))
            })
            .collect();
        let health = backends
            .iter()
            .map(|ns| HealthServer::start(ns, HEALTH_PORT))
            .collect();

        let pins = PinDir::new();
        let dir = std::env::temp_dir().join(format!(
            "fo-agent-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the lab's temp dir");
        let config = dir.join("failover.toml");
        let socket = dir.join("control.sock");
        let mut text = config_text(pins.path(), &socket, options, &layout);
        let extra = extra(&dir);
        if !extra.is_empty() {
            text.push('\n');
            text += &extra;
        }
        std::fs::write(&config, text).expect("write the config");
        let mut lab = Self {
            agent: None,
            health,
            servers,
            _peers: peers,
            pins,
            _peer_pins: peer_pins,
            client,
            lb,
            backends,
            pid_file: dir.join("agent.pid"),
            log: dir.join("agent.log"),
            config,
            layout,
            dir,
            log_start: 0,
            log_shown: std::cell::Cell::new(false),
        };
        lab.start_agent();
        lab
    }

    pub fn start_layout(
        options: Options,
        layout: Layout,
        extra: impl FnOnce(&Path) -> String,
    ) -> Self {
        let lab = Self::build(options, layout, extra);
        let first = lab.layout.backends[0].name.clone();
        let samples = lab.sample_until(&first, Duration::from_secs(10));
        assert!(
            samples.reached().is_some(),
            "new flows never reached {first} after the agent started: {}\n{}",
            samples.summary(),
            lab.diag()
        );
        lab
    }

    /// Like [`Self::start_layout`], but returns as soon as the agent runs,
    /// whether or not traffic gets through (for tests of what a new
    /// operator's setup does).
    pub fn start_layout_unchecked(
        options: Options,
        layout: Layout,
        extra: impl FnOnce(&Path) -> String,
    ) -> Self {
        Self::build(options, layout, extra)
    }

    /// The lab's backends and service keys.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Starts `failover run` (again) in the lb namespace and waits for its
    /// "agent running" line.
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "an agent is already running");
        self.log_start = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let agent = AgentProcess::start(
            &self.lb,
            &crate::failover_bin(),
            &self.config,
            &self.pid_file,
            &self.log,
        )
        .expect("start failover run");
        self.agent = Some(agent);
        let started = Instant::now();
        loop {
            if self.agent_log().contains("agent running") {
                break;
            }
            if let Ok(Some(status)) = self.agent.as_mut().unwrap().try_wait() {
                self.agent = None;
                panic!("the agent exited at start: {status}\n{}", self.diag());
            }
            assert!(
                started.elapsed() < AGENT_START,
                "the agent did not start in {AGENT_START:?}\n{}",
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes the link between the lb and backend `i` and creates it again
    /// with the same names and addresses (an interface an operator or a
    /// container runtime recreated): the new lb side has a new ifindex.
    pub fn recreate_backend_link(&self, i: usize) {
        let lb_if = self.layout.backends[i].lb_side.clone();
        let backend = &self.backends[i];
        self.lb.ip(&["link", "del", &lb_if]);
        failover::lab::netns::veth((&self.lb, &lb_if), (backend, topology::PEER_IF));
        let lb_cidr = format!("{}/28", topology::lb_backend_addr(i));
        self.lb.ip(&["addr", "add", &lb_cidr, "dev", &lb_if]);
        let cidr = format!("{}/28", topology::backend_addr(i));
        backend.ip(&["addr", "add", &cidr, "dev", topology::PEER_IF]);
        let via = topology::lb_backend_addr(i).to_string();
        backend.ip(&["route", "add", "192.0.2.0/24", "via", &via]);
        backend.disable_tx_checksum(topology::PEER_IF);
        self.lb.disable_tx_checksum(&lb_if);
        // Redirected frames need NAPI on the receiving veth.
        backend.enable_gro(topology::PEER_IF);
    }

    /// Stops the agent with SIGTERM (as systemd does) and reaps it.
    pub fn stop_agent(&mut self) {
        let mut agent = self.agent.take().expect("no agent running");
        let stopped = agent.stop();
        eprintln!("agent {} stopped: {stopped:?}", agent.pid());
    }

    /// Sends `signal` to the agent (a crash: SIGABRT, SIGSEGV) and reaps it.
    pub fn crash_agent(&mut self, signal: i32) {
        let mut agent = self.agent.take().expect("no agent running");
        // SAFETY: kill(2) to our own, not yet reaped child.
        unsafe { libc::kill(agent.pid() as i32, signal) };
        let started = Instant::now();
        while agent.try_wait().ok().flatten().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the agent survived signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the agent and reaps it.
    pub fn kill_agent(&mut self) {
        let mut agent = self.agent.take().expect("no agent running");
        let status = agent.sigkill().expect("SIGKILL and reap the agent");
        eprintln!("agent {} killed: {status}", agent.pid());
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("no agent running").pid()
    }

    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// The agent's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// The agent's configuration file (tests may rewrite it and reload).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The lab's temp dir (config, socket, log; removed unless the test fails).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The whole log file (every agent process of this lab).
    pub fn full_log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// What the current (or last) agent process wrote.
    pub fn agent_log(&self) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = File::open(&self.log) {
            use std::io::Seek;
            let _ = file.seek(std::io::SeekFrom::Start(self.log_start));
            let _ = file.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Lines of the whole log containing `pattern`.
    pub fn log_lines(&self, pattern: &str) -> Vec<String> {
        self.full_log()
            .lines()
            .filter(|l| l.contains(pattern))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (bounded) until the current agent's log contains `pattern`.
    pub fn wait_log(&self, pattern: &str, bound: Duration) {
        let started = Instant::now();
        while !self.agent_log().contains(pattern) {
            assert!(
                started.elapsed() < bound,
                "no {pattern:?} in the agent log within {bound:?}\n{}",
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `failover <args>`; returns stdout, panics (with diagnostics) on
    /// failure.
    pub fn failover(&self, args: &[&str]) -> String {
        let output = self.failover_output(args);
        assert!(
            output.status.success(),
            "failover {args:?}: {}\nstdout: {}\nstderr: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.diag()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `failover <args>` and returns its output, whatever its exit
    /// status (for commands expected to fail).
    pub fn failover_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(crate::failover_bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run failover")
    }

    /// `failover --socket <lab socket> <args>`: a control verb; returns
    /// stdout, panics (with diagnostics) on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let socket = self.socket();
        let mut all = vec!["--socket", socket.to_str().expect("utf-8 socket path")];
        all.extend_from_slice(args);
        self.failover(&all)
    }

    /// [`Self::ctl`] with `--json`, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ctl(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("failover {args:?}: {e}: {text}"))
    }

    /// [`Self::ctl`] for a verb that may fail: (exit success, stdout + stderr).
    pub fn ctl_output(&self, args: &[&str]) -> (bool, String) {
        let socket = self.socket();
        let mut all = vec!["--socket", socket.to_str().expect("utf-8 socket path")];
        all.extend_from_slice(args);
        let output = self.failover_output(&all);
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// `failover inspect --pin-dir <pins> <what> --json`, parsed.
    /// (`what` may carry the subcommand's own arguments.)
    pub fn inspect(&self, what: &[&str]) -> serde_json::Value {
        let pin_dir = self.pin_dir().to_str().expect("utf-8 pin dir").to_owned();
        let mut args = vec!["inspect", "--pin-dir", &pin_dir];
        args.extend_from_slice(what);
        args.push("--json");
        let text = self.failover(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("inspect {what:?}: {e}: {text}"))
    }

    /// `failover --socket <lab socket> status --json`, parsed.
    /// The agent's status (`failover status --json`), typed.
    pub fn status(&self) -> crate::status::StatusAnswer {
        let socket = self.socket();
        let socket = socket.to_str().expect("utf-8 socket path");
        let text = self.failover(&["--socket", socket, "status", "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status: {e}: {text}"))
    }

    /// A counter (verdict, outcome or event) by name, from `inspect counters`.
    pub fn counter(&self, name: &str) -> u64 {
        let counters = self.inspect(&["counters"]);
        counters
            .as_array()
            .expect("counters array")
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {name}: {counters}"))
    }

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

    /// Agent log and data-path state, for failure messages. (A failure
    /// whose message lacks it gets the log printed when the lab drops.)
    pub fn diag(&self) -> String {
        self.log_shown.set(true);
        let backends = Command::new(crate::failover_bin())
            .args(["inspect", "--pin-dir"])
            .arg(self.pin_dir())
            .args(["backends"])
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_else(|e| format!("inspect: {e}"));
        format!(
            "---- failover inspect backends ----\n{backends}---- agent log ({}) ----\n{}",
            self.log.display(),
            self.full_log()
        )
    }
}

impl Drop for AgentLab {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take()
            && agent.stop() == Stopped::Killed
        {
            eprintln!("agent {} ignored SIGTERM; SIGKILL", agent.pid());
        }
        if let Err(err) = failover::dataplane::remove_pins(self.pins.path()) {
            eprintln!("removing pins {}: {err}", self.pins.path().display());
        }
        if std::thread::panicking() {
            if !self.log_shown.get() {
                eprintln!("---- agent log ----\n{}", self.full_log());
            }
            eprintln!("agent log kept in {}", self.log.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn config_text(pin_dir: &Path, socket: &Path, options: Options, layout: &Layout) -> String {
    let mut text = format!(
        "pin_dir = {:?}\n\n[control]\nsocket = {:?}\n\n",
        pin_dir.display().to_string(),
        socket.display().to_string()
    );
    let interfaces =
        std::iter::once("lbc").chain(layout.backends.iter().map(|b| b.lb_side.as_str()));
    for interface in interfaces {
        text += &format!(
            "[[interfaces]]\nname = \"{interface}\"\nmode = \"{}\"\n\n",
            layout.mode
        );
    }
    text += &format!(
        "[[services]]\nname = \"web\"\nvip = \"{VIP}\"\nport = {SERVICE_PORT}\nprotocol = \"tcp\"\n"
    );
    match options.failback {
        Failback::Auto(delay) => {
            text += &format!(
                "failback = \"auto\"\nfailback_delay = \"{}ms\"\n",
                delay.as_millis()
            )
        }
        Failback::Manual => text += "failback = \"manual\"\n",
    }
    text += &layout.service_keys;
    text += "\n[services.probe]\n";
    match options.probe {
        Probe::Tcp { port } => text += &format!("type = \"tcp\"\nport = {port}\n"),
        Probe::Http { port } => {
            text += &format!("type = \"http\"\nport = {port}\npath = \"/healthz\"\n")
        }
    }
    let (interval, timeout) = layout.probe_timing;
    text += &format!(
        "interval = \"{}us\"\ntimeout = \"{}us\"\nrise = 2\nfall = 3\n",
        interval.as_micros(),
        timeout.as_micros()
    );
    for backend in &layout.backends {
        text += &format!(
            "\n[[services.backends]]\nname = \"{}\"\naddress = \"{}\"\nport = {BACKEND_PORT}\ntier = {}\n",
            backend.name, backend.addr, backend.tier
        );
        if let Some(weight) = backend.weight {
            text += &format!("weight = {weight}\n");
        }
    }
    text
}

// ---- Clients ---------------------------------------------------------------

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

// ---- The health endpoint ----------------------------------------------------

/// How a [`HealthServer`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Listening; answers `200 OK` at once.
    Up = 0,
    /// Not listening (connections are refused).
    Down = 1,
    /// Listening; answers after [`SLOW_ANSWER`] (beyond the probe timeout).
    Slow = 2,
}

/// How late a [`Health::Slow`] server answers.
pub const SLOW_ANSWER: Duration = Duration::from_millis(200);

/// A tiny HTTP health endpoint in a backend namespace whose behaviour the
/// test switches; [`HealthServer::set`] returns once the server applied it.
pub struct HealthServer {
    wanted: Arc<AtomicU8>,
    applied: Arc<AtomicU8>,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    pub fn start(ns: &NetNs, port: u16) -> Self {
        let wanted = Arc::new(AtomicU8::new(Health::Up as u8));
        let applied = Arc::new(AtomicU8::new(u8::MAX));
        let shutdown = Arc::new(AtomicBool::new(false));
        let ns = ns.open().expect("open the backend netns");
        let thread = {
            let (wanted, applied, shutdown) = (wanted.clone(), applied.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("health".into())
                .spawn(move || serve_health(&ns, port, &wanted, &applied, &shutdown))
                .expect("spawn the health server")
        };
        let server = Self {
            wanted,
            applied,
            shutdown,
            thread: Some(thread),
        };
        server.set(Health::Up);
        server
    }

    /// Switches the behaviour; returns once the server has applied it.
    pub fn set(&self, health: Health) {
        self.wanted.store(health as u8, Ordering::SeqCst);
        let started = Instant::now();
        while self.applied.load(Ordering::SeqCst) != health as u8 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "health server did not switch to {health:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_health(
    ns: &NsFd,
    port: u16,
    wanted: &AtomicU8,
    applied: &AtomicU8,
    shutdown: &Arc<AtomicBool>,
) {
    ns.enter().expect("enter the backend netns");
    let started = Instant::now();
    let slow = Arc::new(AtomicBool::new(false));
    let mut listener: Option<TcpListener> = None;
    let connections: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());
    while !shutdown.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
        let want = wanted.load(Ordering::SeqCst);
        if want != applied.load(Ordering::SeqCst) {
            if want == Health::Down as u8 {
                listener = None;
            } else if listener.is_none() {
                match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
                    Ok(l) => {
                        l.set_nonblocking(true).expect("nonblocking listener");
                        listener = Some(l);
                    }
                    Err(e) => {
                        eprintln!("health server: bind {port}: {e}");
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                }
            }
            slow.store(want == Health::Slow as u8, Ordering::SeqCst);
            applied.store(want, Ordering::SeqCst);
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        let mut pfd = libc::pollfd {
            fd: l.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 2) } <= 0 {
            continue;
        }
        if let Ok((stream, _)) = l.accept() {
            let (slow, shutdown) = (slow.clone(), shutdown.clone());
            let handle = std::thread::Builder::new()
                .name("health-conn".into())
                .spawn(move || answer_health(stream, &slow, &shutdown));
            let mut list = connections.lock().unwrap();
            if let Ok(handle) = handle {
                list.push(handle);
            }
            list.retain(|h| !h.is_finished());
        }
    }
    for handle in connections.into_inner().unwrap() {
        let _ = handle.join();
    }
}

/// Reads the request head (bounded), waits if slow, answers 200 and closes.
fn answer_health(mut stream: TcpStream, slow: &AtomicBool, shutdown: &AtomicBool) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .is_err()
    {
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if slow.load(Ordering::SeqCst) {
        let until = Instant::now() + SLOW_ANSWER;
        while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok\n",
    );
}
