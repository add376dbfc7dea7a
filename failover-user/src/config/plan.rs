//! The resolved plan: a validated configuration, ready to apply, and the
//! defaults it was completed with.

use std::{ops::RangeInclusive, path::PathBuf, time::Duration};

use crate::{
    dataplane::AttachMode,
    decide::policy::Failback,
    model::{BackendSpec, ServiceSpec},
};

/// A validated configuration, ready to apply.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub pin_dir: PathBuf,
    pub interfaces: Vec<(String, AttachMode)>,
    pub services: Vec<ServicePlan>,
    /// Unix socket of the control API (root-only).
    pub control_socket: PathBuf,
    /// Prometheus endpoint; `None` when turned off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub journal: Option<JournalConfig>,
    pub alerts: Vec<AlertConfig>,
    pub conntrack: ConntrackConfig,
    /// `[routing]`: announce the VIPs this host can serve; `None`: off.
    pub routing: Option<RoutingConfig>,
    /// `[sync]`: flows pinned off the Maglev table shared with the other
    /// edge hosts; `None`: off.
    pub sync: Option<SyncConfig>,
}

/// `[sync]`: every `interval`, the flows this host carries on a backend its
/// table no longer names for them (pinned after a failback, a drain,
/// `keep`, slow start) are sent to every peer over UDP, and the peers'
/// are written into this host's flow table, so that any edge host
/// continues any flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// This agent's socket (a concrete address: peers accept datagrams
    /// from the configured addresses only).
    pub listen: std::net::SocketAddr,
    pub peers: Vec<std::net::SocketAddr>,
    pub interval: Duration,
}

pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// `[routing]`: the VIPs this host can serve are written as routes to
/// `device` in kernel table `table`, which the routing daemon learns and
/// announces (BGP to the upstream routers). The device lives as long as
/// the agent: when the agent dies, the kernel removes the routes and the
/// daemon withdraws them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    pub daemon: RoutingDaemon,
    pub table: u32,
    pub device: String,
    pub when_unusable: crate::decide::announce::WhenUnusable,
    /// Exists while the host is drained (`failover host drain`): kept
    /// across restarts and reboots.
    pub drain_file: PathBuf,
}

/// The routing daemon that learns the announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingDaemon {
    /// BIRD 2: a `kernel` protocol on the table with `learn`.
    Bird,
}

pub const DEFAULT_ROUTING_TABLE: u32 = 200;
pub const DEFAULT_ROUTING_DEVICE: &str = "fo-announce";
pub const DEFAULT_ROUTING_DRAIN_FILE: &str = "/var/lib/failover/host-drained";

/// The flow table: its size (fixed when it is created), flow lifetimes and
/// the flood guard's threshold (both may change on reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    pub max_flows: u32,
    /// An open TCP flow without packets.
    pub tcp_timeout: Duration,
    /// A TCP flow after a FIN or RST.
    pub tcp_closing_timeout: Duration,
    /// A UDP flow without packets.
    pub udp_timeout: Duration,
    /// New flows one CPU records per second before the flood guard stops
    /// recording them.
    pub max_new_flows_per_cpu: u32,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        use failover_common as common;
        Self {
            max_flows: common::DEFAULT_MAX_FLOWS,
            tcp_timeout: Duration::from_nanos(common::DEFAULT_TCP_OPEN_NS),
            tcp_closing_timeout: Duration::from_nanos(common::DEFAULT_TCP_CLOSING_NS),
            udp_timeout: Duration::from_nanos(common::DEFAULT_UDP_NS),
            max_new_flows_per_cpu: common::DEFAULT_MAX_NEW_FLOWS_PER_CPU,
        }
    }
}

impl ConntrackConfig {
    /// The value of `FO_SETTINGS`.
    pub fn settings(&self) -> failover_common::Settings {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        failover_common::Settings {
            tcp_open_ns: ns(self.tcp_timeout),
            tcp_closing_ns: ns(self.tcp_closing_timeout),
            udp_ns: ns(self.udp_timeout),
            max_new_flows_per_cpu: self.max_new_flows_per_cpu,
            _pad: 0,
        }
    }
}

/// The event journal: JSON lines, rotated at `max_bytes`, `keep` old files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertTarget {
    /// HTTP POST of the event JSON to `http://host:port/path`.
    Webhook { url: String },
    /// Runs the command with the event JSON on stdin.
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    pub target: AlertTarget,
    pub events: Vec<crate::events::EventKind>,
    pub timeout: Duration,
    /// Further attempts after a failed one.
    pub retries: u32,
}

pub const DEFAULT_CONTROL_SOCKET: &str = "/run/failover/control.sock";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9370";
pub const DEFAULT_JOURNAL_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_JOURNAL_KEEP: u32 = 3;
pub const DEFAULT_ALERT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_ALERT_RETRIES: u32 = 3;
/// Events alerted on unless an alert lists its own.
pub const DEFAULT_ALERT_EVENTS: [crate::events::EventKind; 6] = [
    crate::events::EventKind::Failover,
    crate::events::EventKind::Failback,
    crate::events::EventKind::QuorumLost,
    crate::events::EventKind::AgentStart,
    crate::events::EventKind::AgentStop,
    crate::events::EventKind::VipWithdrawn,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub name: String,
    pub spec: ServiceSpec,
    pub failback: Failback,
    /// Maglev table slots; 0: no table.
    pub table_size: u32,
    pub mode: crate::decide::select::Mode,
    pub dead_flows: crate::decide::policy::DeadFlows,
    /// SYNs a backend refuses (RST) or leaves unanswered (repeated by the
    /// client) go to another backend, in the data path.
    pub redispatch: bool,
    /// A returning backend's share of new flows ramps up linearly over
    /// this; `None`: at once.
    pub slow_start: Option<std::time::Duration>,
    pub quorum: Option<(
        crate::decide::policy::Quorum,
        crate::decide::policy::QuorumPolicy,
    )>,
    /// Passive detection; `None`: off.
    pub passive: Option<crate::decide::passive::PassiveSettings>,
    /// Flap damping; `None`: off.
    pub damping: Option<crate::decide::damping::DampingSettings>,
    pub backends: Vec<BackendPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPlan {
    pub name: String,
    pub spec: BackendSpec,
    pub probe: ProbeSpec,
    /// Cold standby: not probed until a promotion is needed.
    pub cold: Option<ColdStart>,
}

/// How a cold standby is brought up when it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdStart {
    /// Run first (with `{address}` substituted); none: just start probing.
    pub command: Option<Vec<String>>,
    /// Deadline for the command and then `rise` passing probes.
    pub timeout: Duration,
    /// Pause before a start that failed is tried again (if still needed).
    pub retry: Duration,
}

pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub jitter: Duration,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Tcp {
        port: u16,
    },
    Http {
        port: u16,
        path: String,
        status: RangeInclusive<u16>,
        body: Option<String>,
    },
    Udp {
        port: u16,
        send: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
    Icmp,
    Exec {
        command: Vec<String>,
        /// For `{port}`: the probe's port (the backend's traffic port unless
        /// the probe names another).
        port: u16,
    },
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
pub const DEFAULT_FAILBACK_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl ServicePlan {
    /// What the data path carries for this service.
    pub fn wanted(&self) -> crate::dataplane::WantedService {
        let mut flags = 0;
        if self.dead_flows == crate::decide::policy::DeadFlows::Reset {
            flags |= failover_common::SERVICE_F_RESET_DEAD_FLOWS;
        }
        if self.redispatch && self.spec.proto == crate::model::Proto::Tcp {
            flags |= failover_common::SERVICE_F_REDISPATCH;
        }
        crate::dataplane::WantedService {
            spec: self.spec,
            backends: self.backends.iter().map(|b| b.spec).collect(),
            settings: crate::dataplane::ServiceSettings {
                table_size: self.table_size,
                mode: self.mode,
                flags,
            },
        }
    }

    pub fn needs(&self) -> crate::dataplane::ServiceNeeds {
        crate::dataplane::ServiceNeeds {
            name: self.name.clone(),
            backends: self.backends.len(),
            table_size: self.table_size,
        }
    }
}
