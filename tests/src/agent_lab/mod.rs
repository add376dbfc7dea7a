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
//! lb's `lbb<i>` at [`topology::backend_addr`]`(i)`) and the service's
//! policies (redundancy mode, quorum, dead-flow policy).
//!
//! The agent's configuration is a [`ConfigToml`] ([`crate::config`]): the
//! lab's (`layout::lab_config`), changed by the test's `extra` before the
//! first start (more services, metrics, journal, alerts, a cold standby),
//! and by [`AgentLab::write_config`] for reloads.
//!
//! The namespaces and links are the library's edge topology
//! ([`failover::lab::topology`]). The agent runs as a child process whose
//! network namespace is the lb's ([`AgentProcess`]: `setns` in `pre_exec`,
//! not `ip netns exec`, which would hide bpffs); it attaches XDP to the lb's
//! interfaces itself, through links pinned in the test's own pin directory.
//! The test attaches the pass program to the veth peers (native
//! XDP_TX/redirect into a veth needs one there) from its own data path with
//! its own pin directory, and turns transmit checksum offload off on every
//! sender, the lb included (a local sender with offload on leaves partial
//! checksums; README, data path step 5, says how the product copes, and
//! the layouts with `offload_on` test it).
//!
//! Drop order: the agent process (SIGTERM, then SIGKILL, always reaped), then
//! its pins (which detach its pinned links), then servers, the peers' data
//! path, and last the namespaces. The agent's log goes to a file (never a
//! pipe: a dropped pipe kills it with EPIPE and leaves pins behind).

mod ctl;
mod faults;
mod health;
mod layout;
mod samples;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use aya::programs::{Xdp, XdpMode};
use failover::{
    AttachMode, Dataplane,
    lab::{
        agent::{AgentProcess, Stopped},
        topology::{self, BackendLink, PEER_IF, Topology},
    },
};

pub use self::{
    faults::{FullMaglevMap, PinsMovedAside},
    health::{Health, HealthServer, SLOW_ANSWER},
    layout::{
        DETECTION, FAILOVER_BOUND, Failback, HOSTS, Host, LabBackend, Layout, Options, Probe,
    },
    samples::{Samples, connect_vip, load_with_long, new_flows, request, web},
};
pub use crate::servers::ask;
use crate::{config::ConfigToml, netns::NetNs, pins::PinDir, servers::BackendServer};

pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SERVICE_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;
/// Where every backend also answers, for a second service (a backend
/// endpoint serves one service: replies find their VIP by it).
pub const SECOND_SERVICE_PORT: u16 = 8088;
pub const BACKEND_UDP_PORT: u16 = 5353;
pub const HEALTH_PORT: u16 = 8081;

pub const PRIMARY: usize = 0;
pub const STANDBY: usize = 1;

/// How long the agent gets to start (load, attach, first log line).
const AGENT_START: Duration = Duration::from_secs(15);
/// Every thread of the lab gives up after this, whatever the test does.
const MAX_LIFETIME: Duration = Duration::from_secs(120);

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
    config_path: PathBuf,
    /// What `config_path` holds (as last written by the lab).
    config: ConfigToml,
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
        Self::start_with(options, |_, config| config)
    }

    /// Like [`Self::start`], with the agent's configuration changed by
    /// `extra(lab temp dir, the lab's configuration)` before the agent
    /// starts: more services, `[metrics]`, `[journal]`, `[[alerts]]`, keys of
    /// the web service and its backends.
    pub fn start_with(
        options: Options,
        extra: impl FnOnce(&Path, ConfigToml) -> ConfigToml,
    ) -> Self {
        Self::start_layout(options, Layout::primary_standby(), extra)
    }

    /// Like [`Self::start_with`], with the backends (names, tiers, weights)
    /// and service policies of `layout`. Every backend gets a
    /// [`BackendServer`] on [`BACKEND_PORT`] and a [`HealthServer`] on
    /// [`HEALTH_PORT`]; returns once new flows reach the layout's first
    /// backend.
    fn build(
        options: Options,
        layout: Layout,
        door: Option<&mut Xdp>,
        extra: impl FnOnce(&Path, ConfigToml) -> ConfigToml,
    ) -> Self {
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
        match (layout.plain_veth, door) {
            (true, _) => {}
            (false, None) => net
                .attach_pass_on_peers(&mut peers)
                .expect("attach the pass program to a veth peer"),
            (false, Some(door)) => {
                net.client
                    .run(|| peers.attach_pass(PEER_IF, AttachMode::Native))
                    .expect("attach the pass program on the client");
                for ns in &net.backends {
                    ns.run(|| door.attach(PEER_IF, XdpMode::Driver))
                        .expect("attach the door on a backend");
                }
            }
        }
        if layout.ipv6 {
            net.add_ipv6();
        }
        let Topology {
            client,
            lb,
            backends,
            ..
        } = net;
        let servers = layout
            .backends
            .iter()
            .zip(&backends)
            .map(|(backend, ns)| {
                Some(
                    BackendServer::start(ns, &backend.name, BACKEND_PORT, BACKEND_UDP_PORT)
                        .also_on(ns, SECOND_SERVICE_PORT),
                )
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
        let config_path = dir.join("failover.toml");
        let socket = dir.join("control.sock");
        let config = extra(
            &dir,
            layout::lab_config(pins.path(), &socket, options, &layout),
        );
        config.write(&config_path);
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
            config_path,
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
        extra: impl FnOnce(&Path, ConfigToml) -> ConfigToml,
    ) -> Self {
        Self::build(options, layout, None, extra).reaching_the_first_backend()
    }

    /// Like [`Self::start_layout`], with `door` (an XDP program, loaded,
    /// not attached: a flood's filter, [`crate::flood::Flood::door`])
    /// instead of the pass program on the backends' side of their links.
    /// The door must outlive the lab.
    pub fn start_layout_with_door(
        options: Options,
        layout: Layout,
        door: &mut Xdp,
        extra: impl FnOnce(&Path, ConfigToml) -> ConfigToml,
    ) -> Self {
        Self::build(options, layout, Some(door), extra).reaching_the_first_backend()
    }

    /// Waits (bounded) until new flows reach the layout's first backend.
    fn reaching_the_first_backend(self) -> Self {
        let lab = self;
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
        extra: impl FnOnce(&Path, ConfigToml) -> ConfigToml,
    ) -> Self {
        Self::build(options, layout, None, extra)
    }

    /// The lab's backends and service policies.
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
            &self.config_path,
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
        assert!(
            agent.signal(signal),
            "the agent was gone before signal {signal}"
        );
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

    /// The agent's configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// What the configuration file holds: the lab's configuration as the
    /// test's `extra` left it, or what [`Self::write_config`] wrote last.
    pub fn config(&self) -> &ConfigToml {
        &self.config
    }

    /// Writes `config` to the configuration file (for a reload, SIGHUP or
    /// the next [`Self::start_agent`]).
    pub fn write_config(&mut self, config: &ConfigToml) {
        config.write(&self.config_path);
        self.config = config.clone();
    }

    /// The lab's temp dir (config, socket, log; removed unless the test fails).
    pub fn dir(&self) -> &Path {
        &self.dir
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
