//! What a lab is built with: its backends ([`Layout`]), the agent's probe
//! and failback ([`Options`]), and the configuration the lab writes from
//! them ([`lab_config`]).

use std::{net::Ipv4Addr, path::Path, time::Duration};

use failover::lab::topology;

use super::{BACKEND_PORT, PRIMARY, SERVICE_PORT, STANDBY, VIP};
use crate::config::{
    BackendToml, ConfigToml, Policies, ProbeToml, ServiceToml, SetPolicies, XdpMode,
};

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

impl SetPolicies for Layout {
    fn policies_mut(&mut self) -> &mut Policies {
        &mut self.policies
    }
}

/// The backends of a lab's `web` service (in backend order: backend `i`
/// lives in `lab.backends[i]`, served by `lab.servers[i]` and
/// `lab.health[i]`) and the policies of the service.
#[derive(Clone, Debug)]
pub struct Layout {
    pub backends: Vec<LabBackend>,
    /// web's policies (the configuration's defaults unless set: `mode`
    /// tiers), set through [`SetPolicies`].
    pub policies: Policies,
    /// Probe interval and timeout (default 100 ms and 50 ms).
    pub probe_timing: (Duration, Duration),
    /// Veth links as `ip link add` leaves them: no XDP program on the
    /// peers (so no NAPI there for redirected frames, GRO being off) and,
    /// with `offload_on`, transmit checksum offload on at the senders.
    pub plain_veth: bool,
    pub offload_on: bool,
    /// The lb's interfaces' XDP mode (native unless set).
    pub mode: XdpMode,
    /// IPv6 on as well ([`failover::lab::topology::Topology::add_ipv6`]):
    /// the backends and the client get their IPv6 addresses too.
    pub ipv6: bool,
}

impl Layout {
    fn of(backends: Vec<LabBackend>) -> Self {
        Self {
            backends,
            policies: Policies::default(),
            probe_timing: DEFAULT_PROBE_TIMING,
            plain_veth: false,
            offload_on: false,
            mode: XdpMode::Native,
            ipv6: false,
        }
    }

    /// With IPv6 addresses as well (dual stack).
    pub fn dual_stack(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// [`HOSTS`]: primary (tier 0) behind `lbp`, standby (tier 1) behind
    /// `lbs` — what [`super::AgentLab::start`] builds.
    pub fn primary_standby() -> Self {
        Self::of(
            HOSTS
                .iter()
                .map(|host| LabBackend {
                    name: host.name.to_owned(),
                    tier: host.tier,
                    weight: None,
                    lb_side: host.lb_side.to_owned(),
                    addr: host.addr,
                })
                .collect(),
        )
    }

    /// One backend per `(name, tier)`, backend `i` behind the lb's
    /// interface `lbb<i>` (at most 15 backends).
    pub fn tiers(backends: &[(&str, u8)]) -> Self {
        assert!(
            backends.len() < 15,
            "the topology numbers at most 15 backends"
        );
        Self::of(
            backends
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
        )
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

    /// Attaches the agent's XDP in this mode.
    pub fn mode(mut self, mode: XdpMode) -> Self {
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

/// The lab's configuration: its pins and socket, XDP on the lb's client
/// side and every backend side, and the `web` service (VIP:80 → every
/// backend of the layout on [`BACKEND_PORT`]).
pub(super) fn lab_config(
    pin_dir: &Path,
    socket: &Path,
    options: Options,
    layout: &Layout,
) -> ConfigToml {
    let probe = match options.probe {
        Probe::Tcp { port } => ProbeToml::tcp().port(port),
        Probe::Http { port } => ProbeToml::http("/healthz").port(port),
    };
    let (interval, timeout) = layout.probe_timing;
    let mut web = ServiceToml::tcp("web", VIP, SERVICE_PORT)
        .probe(probe.interval(interval).timeout(timeout).rise(2).fall(3));
    web = match options.failback {
        Failback::Auto(delay) => web.failback_auto(delay),
        Failback::Manual => web.failback_manual(),
    };
    web.policies = layout.policies;
    for backend in &layout.backends {
        let mut toml = BackendToml::new(&backend.name, backend.addr)
            .port(BACKEND_PORT)
            .tier(backend.tier);
        toml.weight = backend.weight;
        web = web.backend(toml);
    }
    let interfaces =
        std::iter::once("lbc").chain(layout.backends.iter().map(|b| b.lb_side.as_str()));
    interfaces
        .fold(
            ConfigToml::new().pin_dir(pin_dir).control_socket(socket),
            |config, interface| config.interface(interface, layout.mode),
        )
        .service(web)
}
