//! The agent's TOML configuration: parsing (unknown fields rejected, errors
//! that name the field and line) and validation into a resolved plan.
//!
//! Defaults: pin_dir `/sys/fs/bpf/failover`; interface mode `auto`; probe
//! `tcp` every 1s, timeout 500ms, rise 2, fall 3, jitter 10% of the interval;
//! failback `auto` after 10s.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use failover_common::MAX_SELECTION;
use serde::Deserialize;
use toml::Spanned;

use crate::{
    dataplane::AttachMode,
    limits,
    model::{BackendSpec, Proto, ServiceSpec},
};

/// A configuration that cannot be used. Nothing is applied when one occurs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors, unknown fields, wrong types: toml's message names the
    /// line, column and field.
    #[error(transparent)]
    Parse(#[from] toml::de::Error),
    #[error("{field} (line {line}): {message}")]
    Invalid {
        field: String,
        line: usize,
        message: String,
    },
    /// The configuration does not fit the data path's maps.
    #[error("the configuration does not fit the data path: {0}")]
    Capacity(#[from] crate::dataplane::CapacityError),
}

// ---- The file as written -------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    pin_dir: Option<PathBuf>,
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    services: Vec<RawService>,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    metrics: RawMetrics,
    journal: Option<RawJournal>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    /// "127.0.0.1:9370" by default; "" turns the endpoint off.
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    path: PathBuf,
    max_bytes: Option<u64>,
    keep: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    webhook: Option<Spanned<String>>,
    exec: Option<Spanned<Vec<String>>>,
    events: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<String>>,
    retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    #[serde(default)]
    mode: RawMode,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    Native,
    Skb,
    #[default]
    Auto,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    vip: Ipv4Addr,
    port: u16,
    protocol: RawProto,
    #[serde(default)]
    failback: RawFailback,
    failback_delay: Option<Spanned<String>>,
    /// Maglev table slots (a prime); 0 hashes over the backends directly.
    table_size: Option<Spanned<u32>>,
    #[serde(default)]
    mode: RawRedundancy,
    /// rehash | keep | reset
    #[serde(default)]
    dead_flows: RawDeadFlows,
    /// A count (2) or a percentage ("50%") of the active tier's members.
    min_healthy: Option<Spanned<RawQuorum>>,
    quorum_policy: Option<Spanned<RawQuorumPolicy>>,
    #[serde(default)]
    probe: RawProbe,
    #[serde(default)]
    backends: Vec<RawBackend>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawDeadFlows {
    #[default]
    Rehash,
    Keep,
    Reset,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum RawQuorum {
    Count(u32),
    Text(String),
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawQuorumPolicy {
    NextTier,
    FailOpen,
    FailClosed,
}

/// Redundancy mode of a service.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawRedundancy {
    #[default]
    Tiers,
    NPlusOne,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawProto {
    Tcp,
    Udp,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawFailback {
    #[default]
    Auto,
    Manual,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: Spanned<String>,
    address: Ipv4Addr,
    port: Option<u16>,
    #[serde(default)]
    tier: u8,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    probe: RawProbe,
    /// hot | warm | cold; default hot in the most preferred tier, warm below.
    temperature: Option<Spanned<RawTemperature>>,
    /// cold: run to start the backend when it is needed.
    start_command: Option<Spanned<Vec<String>>>,
    /// cold: how long it may take to pass `rise` probes after the start.
    start_timeout: Option<Spanned<String>>,
    /// cold: pause before one that did not come up is tried again.
    start_retry: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawTemperature {
    Hot,
    Warm,
    Cold,
}

fn one() -> u32 {
    1
}

/// Probe settings; every field optional so a backend's table can override
/// only some of its service's.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(rename = "type")]
    kind: Option<Spanned<RawProbeKind>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    jitter: Option<Spanned<String>>,
    /// Port to probe; defaults to the backend's (mapped) port.
    port: Option<u16>,
    /// http
    path: Option<Spanned<String>>,
    /// http: inclusive range, e.g. [200, 399]
    expect_status: Option<Spanned<[u16; 2]>>,
    /// http: substring the body must contain
    expect_body: Option<String>,
    /// udp: payload to send
    send: Option<Spanned<String>>,
    /// udp: substring the answer must contain (any answer if absent)
    expect: Option<String>,
    /// exec: program and arguments; `{address}` and `{port}` are substituted
    command: Option<Spanned<Vec<String>>>,
    /// http/udp: most response bytes read
    max_response_bytes: Option<usize>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawProbeKind {
    Tcp,
    Http,
    Udp,
    Icmp,
    Exec,
}

impl RawProbe {
    /// `self` with unset fields taken from `base`. A backend that switches
    /// the probe type inherits only the type-independent settings.
    fn over(&self, base: &RawProbe) -> RawProbe {
        let kind_of = |p: &RawProbe| p.kind.as_ref().map(|k| *k.get_ref());
        let same_kind = self.kind.is_none() || kind_of(self) == kind_of(base);
        let empty = RawProbe::default();
        let typed_base = if same_kind { base } else { &empty };
        macro_rules! pick {
            ($from:ident: $($field:ident),*) => {
                $(let $field = self.$field.clone().or_else(|| $from.$field.clone());)*
            };
        }
        pick!(base: kind, interval, timeout, rise, fall, jitter, port, max_response_bytes);
        pick!(typed_base: path, expect_status, expect_body, send, expect, command);
        RawProbe {
            kind,
            interval,
            timeout,
            rise,
            fall,
            jitter,
            port,
            path,
            expect_status,
            expect_body,
            send,
            expect,
            command,
            max_response_bytes,
        }
    }
}

// ---- The resolved plan ---------------------------------------------------

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
pub const DEFAULT_ALERT_EVENTS: [crate::events::EventKind; 5] = [
    crate::events::EventKind::Failover,
    crate::events::EventKind::Failback,
    crate::events::EventKind::QuorumLost,
    crate::events::EventKind::AgentStart,
    crate::events::EventKind::AgentStop,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// After a recovered backend has stayed up for `delay`, new flows go back.
    Auto { delay: Duration },
    /// Stay on the standby until an operator says so.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub name: String,
    pub spec: ServiceSpec,
    pub failback: Failback,
    /// Maglev table slots; 0: no table.
    pub table_size: u32,
    pub mode: crate::table::Mode,
    pub dead_flows: crate::policy::DeadFlows,
    pub quorum: Option<(crate::policy::Quorum, crate::policy::QuorumPolicy)>,
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
        let flags = if self.dead_flows == crate::policy::DeadFlows::Reset {
            failover_common::SERVICE_F_RESET_DEAD_FLOWS
        } else {
            0
        };
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

impl AgentConfig {
    /// What `check` and `run` warn about: valid settings that are usually
    /// a mistake.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (backend, services) in self.shared_backends() {
            warnings.push(format!(
                "backend {backend} serves services {}: a client that uses one source port toward both at once \
                 is mixed up at the backend (give each service its own backend port)",
                services.join(", ")
            ));
        }
        if let Some(listen) = self.metrics_listen
            && !listen.ip().is_loopback()
        {
            warnings.push(format!(
                "metrics.listen = \"{listen}\" serves /metrics beyond this host, without authentication: \
                 it shows every service, backend and traffic figure; bind it to 127.0.0.1 or an address only \
                 your monitoring reaches"
            ));
        }
        warnings
    }

    /// Whether the configuration fits the data path's maps; `previous`
    /// (on a reload) counts the larger table of a service whose size
    /// changes, since both are live while it flips.
    pub fn capacity(
        &self,
        previous: Option<&AgentConfig>,
    ) -> Result<crate::dataplane::Capacity, crate::dataplane::CapacityError> {
        let needs: Vec<_> = self
            .services
            .iter()
            .map(|plan| {
                let mut needs = plan.needs();
                if let Some(old) = previous
                    .and_then(|p| p.services.iter().find(|o| o.spec.key() == plan.spec.key()))
                {
                    needs.table_size = needs.table_size.max(old.table_size);
                }
                needs
            })
            .collect();
        crate::dataplane::Capacity::check(&needs)
    }

    /// Backends (address, port, protocol) that more than one service sends
    /// to, with those services. Valid, but the data path tells a reply's
    /// flow by backend and client address and port: when one client uses
    /// the same source port toward two of these services at once, both
    /// flows meet at the backend as one connection and the later one takes
    /// over the reply mapping. Distinct backend ports per service avoid it.
    pub fn shared_backends(&self) -> Vec<(String, Vec<String>)> {
        let mut users: std::collections::HashMap<(Ipv4Addr, u16, Proto), Vec<String>> =
            Default::default();
        for service in &self.services {
            for backend in &service.backends {
                let port = backend.spec.port.unwrap_or(service.spec.port);
                let names = users
                    .entry((backend.spec.addr, port, service.spec.proto))
                    .or_default();
                if !names.contains(&service.name) {
                    names.push(service.name.clone());
                }
            }
        }
        let mut shared: Vec<(String, Vec<String>)> = users
            .into_iter()
            .filter(|(_, names)| names.len() > 1)
            .map(|((addr, port, proto), names)| (format!("{addr}:{port}/{proto}"), names))
            .collect();
        shared.sort();
        shared
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        Resolver { text }.resolve(raw)
    }
}

struct Resolver<'a> {
    text: &'a str,
}

impl Resolver<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn invalid<T>(
        &self,
        field: impl Into<String>,
        at: usize,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            field: field.into(),
            line: self.line(at),
            message: message.into(),
        })
    }

    fn resolve(&self, raw: RawConfig) -> Result<AgentConfig, ConfigError> {
        let mut interfaces = Vec::new();
        for (i, iface) in raw.interfaces.iter().enumerate() {
            let name = iface.name.get_ref();
            if name.is_empty()
                || name.len() > 15
                || name.contains('/')
                || name.contains(char::is_whitespace)
            {
                return self.invalid(
                    format!("interfaces[{i}].name"),
                    iface.name.span().start,
                    format!("{name:?} is not an interface name"),
                );
            }
            let mode = match iface.mode {
                RawMode::Native => AttachMode::Native,
                RawMode::Skb => AttachMode::Skb,
                RawMode::Auto => AttachMode::Auto,
            };
            interfaces.push((name.clone(), mode));
        }
        if raw.services.is_empty() {
            return self.invalid("services", 0, "at least one [[services]] table is needed");
        }
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut services = Vec::new();
        for raw_service in &raw.services {
            let service = self.service(raw_service)?;
            let at = raw_service.name.span().start;
            if !names.insert(service.name.clone()) {
                return self.invalid(
                    format!("services.{}", service.name),
                    at,
                    "service name used twice",
                );
            }
            let key = (
                service.spec.vip,
                service.spec.port,
                service.spec.proto.number(),
            );
            if !keys.insert(key) {
                return self.invalid(
                    format!("services.{}", service.name),
                    at,
                    format!("{} is already another service's", service.spec),
                );
            }
            services.push(service);
        }
        let metrics_listen = match &raw.metrics.listen {
            None => Some(DEFAULT_METRICS_LISTEN.parse().expect("valid default")),
            Some(text) if text.get_ref().is_empty() => None,
            Some(text) => match text.get_ref().parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    return self.invalid(
                        "metrics.listen",
                        text.span().start,
                        format!("{:?} is not an address:port", text.get_ref()),
                    );
                }
            },
        };
        let journal = match raw.journal.as_ref() {
            None => None,
            Some(j) => Some(JournalConfig {
                path: j.path.clone(),
                max_bytes: self.number(
                    "journal.max_bytes",
                    j.max_bytes,
                    0,
                    DEFAULT_JOURNAL_MAX_BYTES,
                    limits::JOURNAL_MAX_BYTES,
                )?,
                keep: self.number(
                    "journal.keep",
                    j.keep,
                    0,
                    DEFAULT_JOURNAL_KEEP,
                    limits::JOURNAL_KEEP,
                )?,
            }),
        };
        let mut alerts = Vec::new();
        for (i, alert) in raw.alerts.iter().enumerate() {
            alerts.push(self.alert(i, alert)?);
        }
        let config = AgentConfig {
            pin_dir: raw
                .pin_dir
                .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_PIN_DIR)),
            interfaces,
            services,
            control_socket: raw
                .control
                .socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            metrics_listen,
            journal,
            alerts,
        };
        config.capacity(None)?;
        Ok(config)
    }

    fn alert(&self, index: usize, raw: &RawAlert) -> Result<AlertConfig, ConfigError> {
        let field = |f: &str| format!("alerts[{index}].{f}");
        let target = match (&raw.webhook, &raw.exec) {
            (Some(url), None) => {
                if !url.get_ref().starts_with("http://") || url.get_ref().len() <= "http://".len() {
                    return self.invalid(
                        field("webhook"),
                        url.span().start,
                        "must be an http:// URL (for https, point an exec hook at curl)",
                    );
                }
                AlertTarget::Webhook {
                    url: url.get_ref().clone(),
                }
            }
            (None, Some(command)) if !command.get_ref().is_empty() => AlertTarget::Exec {
                command: command.get_ref().clone(),
            },
            (None, Some(command)) => {
                return self.invalid(field("exec"), command.span().start, "needs a program");
            }
            _ => {
                return self.invalid(
                    format!("alerts[{index}]"),
                    0,
                    "exactly one of `webhook` or `exec`",
                );
            }
        };
        let events = match &raw.events {
            None => DEFAULT_ALERT_EVENTS.to_vec(),
            Some(names) => {
                let mut kinds = Vec::new();
                for name in names.get_ref() {
                    match crate::events::EventKind::from_name(name) {
                        Some(kind) => kinds.push(kind),
                        None => {
                            return self.invalid(
                                field("events"),
                                names.span().start,
                                format!("unknown event {name:?}"),
                            );
                        }
                    }
                }
                kinds
            }
        };
        let timeout = match &raw.timeout {
            Some(text) => self.duration(&field("timeout"), text, limits::ALERT_TIMEOUT)?,
            None => DEFAULT_ALERT_TIMEOUT,
        };
        Ok(AlertConfig {
            target,
            events,
            timeout,
            retries: self.number(
                &field("retries"),
                raw.retries,
                0,
                DEFAULT_ALERT_RETRIES,
                limits::ALERT_RETRIES,
            )?,
        })
    }

    fn service(&self, raw: &RawService) -> Result<ServicePlan, ConfigError> {
        let name = raw.name.get_ref().clone();
        let at = raw.name.span().start;
        let field = |f: &str| format!("services.{name}.{f}");
        if name.is_empty() {
            return self.invalid("services.name", at, "must not be empty");
        }
        let spec = ServiceSpec {
            vip: raw.vip,
            port: raw.port,
            proto: match raw.protocol {
                RawProto::Tcp => Proto::Tcp,
                RawProto::Udp => Proto::Udp,
            },
        };
        if raw.port == 0 {
            return self.invalid(field("port"), at, "port 0 is not a service port");
        }
        let failback = match raw.failback {
            RawFailback::Manual => {
                if let Some(delay) = &raw.failback_delay {
                    return self.invalid(
                        field("failback_delay"),
                        delay.span().start,
                        "only meaningful with failback = \"auto\"",
                    );
                }
                Failback::Manual
            }
            RawFailback::Auto => Failback::Auto {
                delay: match &raw.failback_delay {
                    Some(text) => {
                        self.duration(&field("failback_delay"), text, limits::FAILBACK_DELAY)?
                    }
                    None => DEFAULT_FAILBACK_DELAY,
                },
            },
        };
        if raw.backends.is_empty() {
            return self.invalid(
                field("backends"),
                at,
                "a service needs at least one [[services.backends]]",
            );
        }
        if raw.backends.len() > MAX_SELECTION {
            return self.invalid(
                field("backends"),
                at,
                format!(
                    "{} backends; at most {MAX_SELECTION} per service",
                    raw.backends.len()
                ),
            );
        }
        let mut backend_names = BTreeSet::new();
        let mut endpoints = BTreeSet::new();
        let mut backends = Vec::new();
        for raw_backend in &raw.backends {
            let backend_name = raw_backend.name.get_ref().clone();
            let bat = raw_backend.name.span().start;
            let bfield = |f: &str| format!("services.{name}.backends.{backend_name}.{f}");
            if backend_name.is_empty() {
                return self.invalid(field("backends.name"), bat, "must not be empty");
            }
            if !backend_names.insert(backend_name.clone()) {
                return self.invalid(
                    bfield("name"),
                    bat,
                    "backend name used twice in this service",
                );
            }
            if !endpoints.insert((raw_backend.address, raw_backend.port)) {
                return self.invalid(
                    bfield("address"),
                    bat,
                    "the same address and port appear twice in this service",
                );
            }
            if raw_backend.port == Some(0) {
                return self.invalid(bfield("port"), bat, "port 0 is not a backend port");
            }
            if !limits::WEIGHT.contains(&raw_backend.weight) {
                return self.invalid(
                    bfield("weight"),
                    bat,
                    format!("must be {}", limits::describe(&limits::WEIGHT)),
                );
            }
            let target_port = raw_backend.port.unwrap_or(raw.port);
            let merged = raw_backend.probe.over(&raw.probe);
            let probe = self.probe(&bfield("probe"), bat, &merged, target_port)?;
            let best_tier = raw.backends.iter().map(|b| b.tier).min().unwrap_or(0);
            let temperature = raw_backend.temperature.as_ref().map(|t| *t.get_ref());
            let temperature_at = raw_backend
                .temperature
                .as_ref()
                .map_or(bat, |t| t.span().start);
            match temperature {
                Some(RawTemperature::Hot) if raw_backend.tier != best_tier => {
                    return self.invalid(
                        bfield("temperature"),
                        temperature_at,
                        "hot backends serve: put them in the most preferred tier",
                    );
                }
                Some(RawTemperature::Cold) if raw_backend.tier == best_tier => {
                    return self.invalid(
                        bfield("temperature"),
                        temperature_at,
                        "a cold standby must be in a less preferred tier than the serving backends",
                    );
                }
                _ => {}
            }
            let cold = temperature == Some(RawTemperature::Cold);
            if !cold
                && (raw_backend.start_command.is_some()
                    || raw_backend.start_timeout.is_some()
                    || raw_backend.start_retry.is_some())
            {
                return self.invalid(
                    bfield("start_command"),
                    bat,
                    "start_command, start_timeout and start_retry are for temperature = \"cold\"",
                );
            }
            let cold = if cold {
                let command = match &raw_backend.start_command {
                    Some(c) if c.get_ref().is_empty() => {
                        return self.invalid(
                            bfield("start_command"),
                            c.span().start,
                            "needs a program",
                        );
                    }
                    Some(c) => Some(c.get_ref().clone()),
                    None => None,
                };
                let timeout = match &raw_backend.start_timeout {
                    Some(t) => self.duration(&bfield("start_timeout"), t, limits::START_TIMEOUT)?,
                    None => DEFAULT_START_TIMEOUT,
                };
                let retry = match &raw_backend.start_retry {
                    Some(t) => self.duration(&bfield("start_retry"), t, limits::START_RETRY)?,
                    None => DEFAULT_START_RETRY,
                };
                Some(ColdStart {
                    command,
                    timeout,
                    retry,
                })
            } else {
                None
            };
            backends.push(BackendPlan {
                name: backend_name.clone(),
                spec: BackendSpec {
                    addr: raw_backend.address,
                    port: raw_backend.port,
                    tier: raw_backend.tier,
                    weight: raw_backend.weight,
                    // A cold standby takes nothing until it has been started
                    // and has passed its probes.
                    state: if cold.is_some() {
                        crate::model::BackendState::Down
                    } else {
                        crate::model::BackendState::Up
                    },
                },
                probe,
                cold,
            });
        }
        let table_size = match &raw.table_size {
            None => crate::maglev::DEFAULT_TABLE_SIZE,
            Some(size) => {
                let value = *size.get_ref();
                if value != 0
                    && (!crate::maglev::is_prime(value)
                        || value < backends.len() as u32
                        || value > failover_common::MAX_TABLE_SIZE)
                {
                    return self.invalid(
                        field("table_size"),
                        size.span().start,
                        format!(
                            "must be 0 (no table) or a prime between the number of backends and {}; \
                             about 100 slots per backend keeps shares within 1 %",
                            failover_common::MAX_TABLE_SIZE
                        ),
                    );
                }
                value
            }
        };
        let mode = match raw.mode {
            RawRedundancy::Tiers => crate::table::Mode::Tiers,
            RawRedundancy::NPlusOne => crate::table::Mode::NPlusOne,
        };
        let dead_flows = match raw.dead_flows {
            RawDeadFlows::Rehash => crate::policy::DeadFlows::Rehash,
            RawDeadFlows::Keep => crate::policy::DeadFlows::Keep,
            RawDeadFlows::Reset => crate::policy::DeadFlows::Reset,
        };
        let quorum = match (&raw.min_healthy, &raw.quorum_policy) {
            (None, None) => None,
            (None, Some(policy)) => {
                return self.invalid(
                    field("quorum_policy"),
                    policy.span().start,
                    "needs min_healthy",
                );
            }
            (Some(min), policy) => {
                let at = min.span().start;
                let quorum = match min.get_ref() {
                    RawQuorum::Count(0) => {
                        return self.invalid(field("min_healthy"), at, "must be at least 1");
                    }
                    RawQuorum::Count(n) => crate::policy::Quorum::Count(*n),
                    RawQuorum::Text(text) => match text
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse::<u32>().ok())
                    {
                        Some(p) if (1..=100).contains(&p) => crate::policy::Quorum::Percent(p),
                        _ => {
                            return self.invalid(
                                field("min_healthy"),
                                at,
                                format!("{text:?}: a count or a percentage such as \"50%\""),
                            );
                        }
                    },
                };
                let policy = match policy.as_ref().map(|p| *p.get_ref()) {
                    None | Some(RawQuorumPolicy::NextTier) => crate::policy::QuorumPolicy::NextTier,
                    Some(RawQuorumPolicy::FailOpen) => crate::policy::QuorumPolicy::FailOpen,
                    Some(RawQuorumPolicy::FailClosed) => crate::policy::QuorumPolicy::FailClosed,
                };
                Some((quorum, policy))
            }
        };
        Ok(ServicePlan {
            name,
            spec,
            failback,
            table_size,
            mode,
            dead_flows,
            quorum,
            backends,
        })
    }

    /// A duration within `bounds`.
    fn duration(
        &self,
        field: &str,
        text: &Spanned<String>,
        bounds: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        match parse_duration(text.get_ref()) {
            Some(d) if bounds.contains(&d) => Ok(d),
            Some(_) => self.invalid(
                field,
                text.span().start,
                format!(
                    "{:?} is out of bounds: must be {}",
                    text.get_ref(),
                    limits::describe(&bounds)
                ),
            ),
            None => self.invalid(
                field,
                text.span().start,
                format!(
                    "{:?} is not a duration (e.g. \"250ms\", \"1s\", \"2m\")",
                    text.get_ref()
                ),
            ),
        }
    }

    /// A number within `bounds`, or `default` when absent.
    fn number<T: Copy + PartialOrd + std::fmt::Debug>(
        &self,
        field: &str,
        value: Option<T>,
        at: usize,
        default: T,
        bounds: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        let value = value.unwrap_or(default);
        if bounds.contains(&value) {
            return Ok(value);
        }
        self.invalid(
            field,
            at,
            format!(
                "{value:?} is out of bounds: must be {}",
                limits::describe(&bounds)
            ),
        )
    }

    fn probe(
        &self,
        field: &str,
        at: usize,
        raw: &RawProbe,
        target_port: u16,
    ) -> Result<ProbeSpec, ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        let interval = match &raw.interval {
            Some(t) => self.duration(&f("interval"), t, limits::PROBE_INTERVAL)?,
            None => DEFAULT_INTERVAL,
        };
        let timeout = match &raw.timeout {
            Some(t) => self.duration(&f("timeout"), t, limits::PROBE_TIMEOUT)?,
            None => DEFAULT_TIMEOUT.min(interval),
        };
        let jitter = match &raw.jitter {
            Some(t) => self.duration(&f("jitter"), t, limits::PROBE_JITTER)?,
            None => interval / 10,
        };
        let span = |s: Option<std::ops::Range<usize>>| s.map_or(at, |r| r.start);
        if interval.is_zero() {
            return self.invalid(
                f("interval"),
                span(raw.interval.as_ref().map(Spanned::span)),
                "must be above zero",
            );
        }
        if timeout.is_zero() || timeout > interval {
            return self.invalid(
                f("timeout"),
                span(raw.timeout.as_ref().map(Spanned::span)),
                format!("must be above zero and at most the interval ({interval:?})"),
            );
        }
        if jitter >= interval {
            return self.invalid(
                f("jitter"),
                span(raw.jitter.as_ref().map(Spanned::span)),
                format!("must be below the interval ({interval:?})"),
            );
        }
        let rise = raw.rise.as_ref().map_or(DEFAULT_RISE, |r| *r.get_ref());
        let fall = raw.fall.as_ref().map_or(DEFAULT_FALL, |r| *r.get_ref());
        for (name, value, spanned) in [("rise", rise, &raw.rise), ("fall", fall, &raw.fall)] {
            self.number(
                &f(name),
                Some(value),
                span(spanned.as_ref().map(Spanned::span)),
                value,
                limits::RISE_FALL,
            )?;
        }
        let kind_name = raw
            .kind
            .as_ref()
            .map_or(RawProbeKind::Tcp, |k| *k.get_ref());
        let kind_at = span(raw.kind.as_ref().map(Spanned::span));
        let port = raw.port.unwrap_or(target_port);
        // Reject settings that belong to another probe type: they would be ignored.
        let foreign: &[(&str, bool)] = &[
            (
                "path",
                raw.path.is_some() && kind_name != RawProbeKind::Http,
            ),
            (
                "expect_status",
                raw.expect_status.is_some() && kind_name != RawProbeKind::Http,
            ),
            (
                "expect_body",
                raw.expect_body.is_some() && kind_name != RawProbeKind::Http,
            ),
            ("send", raw.send.is_some() && kind_name != RawProbeKind::Udp),
            (
                "expect",
                raw.expect.is_some() && kind_name != RawProbeKind::Udp,
            ),
            (
                "command",
                raw.command.is_some() && kind_name != RawProbeKind::Exec,
            ),
        ];
        if let Some((name, _)) = foreign.iter().find(|(_, bad)| *bad) {
            return self.invalid(
                f(name),
                kind_at,
                format!("not a setting of a {kind_name:?} probe"),
            );
        }
        let kind = match kind_name {
            RawProbeKind::Tcp => ProbeKind::Tcp { port },
            RawProbeKind::Icmp => ProbeKind::Icmp,
            RawProbeKind::Http => {
                let path = raw
                    .path
                    .as_ref()
                    .map_or_else(|| "/".to_owned(), |p| p.get_ref().clone());
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    return self.invalid(
                        f("path"),
                        span(raw.path.as_ref().map(Spanned::span)),
                        "must start with '/' and contain no spaces",
                    );
                }
                let [low, high] = raw
                    .expect_status
                    .as_ref()
                    .map_or([200, 399], |s| *s.get_ref());
                if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
                    return self.invalid(
                        f("expect_status"),
                        span(raw.expect_status.as_ref().map(Spanned::span)),
                        "must be [low, high] within 100..=599",
                    );
                }
                ProbeKind::Http {
                    port,
                    path,
                    status: low..=high,
                    body: raw.expect_body.clone(),
                }
            }
            RawProbeKind::Udp => {
                let Some(send) = raw.send.as_ref().filter(|s| !s.get_ref().is_empty()) else {
                    return self.invalid(
                        f("send"),
                        kind_at,
                        "a udp probe needs a non-empty `send` payload",
                    );
                };
                ProbeKind::Udp {
                    port,
                    send: send.get_ref().as_bytes().to_vec(),
                    expect: raw.expect.as_ref().map(|e| e.as_bytes().to_vec()),
                }
            }
            RawProbeKind::Exec => {
                let Some(command) = raw.command.as_ref().filter(|c| !c.get_ref().is_empty()) else {
                    return self.invalid(
                        f("command"),
                        kind_at,
                        "an exec probe needs `command = [\"program\", ...]`",
                    );
                };
                ProbeKind::Exec {
                    command: command.get_ref().clone(),
                    port,
                }
            }
        };
        Ok(ProbeSpec {
            kind,
            interval,
            timeout,
            rise,
            fall,
            jitter,
            max_response_bytes: self.number(
                &f("max_response_bytes"),
                raw.max_response_bytes,
                at,
                DEFAULT_MAX_RESPONSE_BYTES,
                limits::MAX_RESPONSE_BYTES,
            )?,
        })
    }
}

/// Parses "250ms", "1s", "1.5s", "2m", "100us".
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
pin_dir = "/sys/fs/bpf/failover-test"

[[interfaces]]
name = "eth0"
mode = "native"

[[services]]
name = "web"
vip = "203.0.113.10"
port = 80
protocol = "tcp"
failback = "auto"
failback_delay = "5s"

[services.probe]
type = "http"
path = "/healthz"
interval = "100ms"
timeout = "50ms"
rise = 2
fall = 3

[[services.backends]]
name = "primary"
address = "198.51.100.11"
port = 8080
tier = 0

[[services.backends]]
name = "standby"
address = "198.51.100.12"
port = 8080
tier = 1
probe = { type = "tcp", interval = "1s", timeout = "200ms" }
"#;

    #[test]
    fn example_resolves_with_overrides_and_defaults() {
        let config = AgentConfig::parse(EXAMPLE).unwrap();
        assert_eq!(
            config.interfaces,
            vec![("eth0".to_owned(), AttachMode::Native)]
        );
        let web = &config.services[0];
        assert_eq!(
            web.failback,
            Failback::Auto {
                delay: Duration::from_secs(5)
            }
        );
        let primary = &web.backends[0];
        assert_eq!(primary.probe.interval, Duration::from_millis(100));
        assert_eq!(primary.probe.jitter, Duration::from_millis(10));
        assert!(
            matches!(&primary.probe.kind, ProbeKind::Http { port: 8080, path, status, .. } if path == "/healthz" && *status == (200..=399))
        );
        let standby = &web.backends[1];
        assert_eq!(standby.spec.tier, 1);
        // Backend override replaces type and timing; rise/fall come from the service.
        assert_eq!(standby.probe.kind, ProbeKind::Tcp { port: 8080 });
        assert_eq!(standby.probe.interval, Duration::from_secs(1));
        assert_eq!((standby.probe.rise, standby.probe.fall), (2, 3));
    }

    fn error_of(text: &str) -> String {
        AgentConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_field_is_rejected_with_its_line() {
        let text = EXAMPLE.replace("rise = 2", "rise = 2\nrize = 3");
        let err = error_of(&text);
        assert!(err.contains("rize") && err.contains("line 22"), "{err}");
    }

    #[test]
    fn semantic_errors_name_field_and_line() {
        let err = error_of(&EXAMPLE.replace("timeout = \"50ms\"", "timeout = \"150ms\""));
        assert!(
            err.contains("services.web.backends.primary.probe.timeout") && err.contains("line 20"),
            "{err}"
        );
        let err = error_of(&EXAMPLE.replace("name = \"standby\"", "name = \"primary\""));
        assert!(
            err.contains("backend name used twice") && err.contains("line 31"),
            "{err}"
        );
        let err =
            error_of(&EXAMPLE.replace("failback_delay = \"5s\"", "failback_delay = \"soon\""));
        assert!(
            err.contains("failback_delay") && err.contains("not a duration"),
            "{err}"
        );
    }

    #[test]
    fn every_duration_and_number_has_a_bound() {
        let cases = [
            (
                "failback_delay = \"5s\"",
                "failback_delay = \"3000000000000000h\"",
                "failback_delay",
            ),
            ("interval = \"100ms\"", "interval = \"0.001ms\"", "interval"),
            ("interval = \"100ms\"", "interval = \"2h\"", "interval"),
            ("rise = 2", "rise = 0", "rise"),
            ("fall = 3", "fall = 100000", "fall"),
            ("tier = 1\n", "tier = 1\nweight = 1000000\n", "weight"),
            (
                "path = \"/healthz\"",
                "path = \"/healthz\"\nmax_response_bytes = 1",
                "max_response_bytes",
            ),
            (
                "path = \"/healthz\"",
                "path = \"/healthz\"\nmax_response_bytes = 100000000000",
                "max_response_bytes",
            ),
        ];
        for (from, to, field) in cases {
            let text = EXAMPLE.replacen(from, to, 1);
            assert_ne!(text, EXAMPLE, "{from}");
            let err = error_of(&text);
            assert!(
                err.contains(field) && (err.contains("out of bounds") || err.contains("must be")),
                "{to}: {err}"
            );
        }
        let journal = format!("{EXAMPLE}\n[journal]\npath = \"/tmp/j\"\nmax_bytes = 10\n");
        assert!(error_of(&journal).contains("journal.max_bytes"));
        let alert =
            format!("{EXAMPLE}\n[[alerts]]\nexec = [\"x\"]\nretries = 99\ntimeout = \"1h\"\n");
        assert!(error_of(&alert).contains("alerts[0]."));
        // The longest detection the bounds allow is still a valid duration.
        let longest = limits::PROBE_INTERVAL
            .end()
            .checked_mul(*limits::RISE_FALL.end());
        assert!(longest.is_some());
    }

    #[test]
    fn settings_of_another_probe_type_are_rejected() {
        let err = error_of(&EXAMPLE.replace(
            "probe = { type = \"tcp\",",
            "probe = { type = \"tcp\", send = \"x\",",
        ));
        assert!(
            err.contains("send") && err.contains("not a setting"),
            "{err}"
        );
    }

    #[test]
    fn empty_and_duplicate_services_are_rejected() {
        assert!(error_of("").contains("at least one"));
        let doubled = format!(
            "{EXAMPLE}\n{}",
            &EXAMPLE[EXAMPLE.find("[[services]]").unwrap()..]
        );
        assert!(error_of(&doubled).contains("used twice"));
    }

    #[test]
    fn backends_shared_between_services_are_reported() {
        let service = |name: &str, port: u16, backend_port: u16| {
            format!(
                "[[services]]\nname = \"{name}\"\nvip = \"203.0.113.10\"\nport = {port}\nprotocol = \"tcp\"\n\
                 [[services.backends]]\nname = \"a\"\naddress = \"198.51.100.2\"\nport = {backend_port}\n\
                 [[services.backends]]\nname = \"b\"\naddress = \"198.51.100.3\"\nport = {backend_port}\n"
            )
        };
        let shared = format!("{}{}", service("web", 80, 8080), service("alt", 81, 8080));
        let config = AgentConfig::parse(&shared).unwrap();
        let names = vec!["web".to_owned(), "alt".to_owned()];
        assert_eq!(
            config.shared_backends(),
            vec![
                ("198.51.100.2:8080/tcp".to_owned(), names.clone()),
                ("198.51.100.3:8080/tcp".to_owned(), names)
            ]
        );
        let apart = format!("{}{}", service("web", 80, 8080), service("alt", 81, 8090));
        assert!(
            AgentConfig::parse(&apart)
                .unwrap()
                .shared_backends()
                .is_empty()
        );
    }

    #[test]
    fn operations_sections() {
        let text = format!(
            "{EXAMPLE}\n[control]\nsocket = \"/run/fo.sock\"\n[metrics]\nlisten = \"127.0.0.1:9999\"\n\
             [journal]\npath = \"/var/log/fo.jsonl\"\n[[alerts]]\nwebhook = \"http://127.0.0.1:8000/hook\"\n\
             [[alerts]]\nexec = [\"/bin/true\"]\nevents = [\"failover\"]\n"
        );
        let config = AgentConfig::parse(&text).unwrap();
        assert_eq!(config.control_socket, PathBuf::from("/run/fo.sock"));
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9999".parse().unwrap())
        );
        assert_eq!(
            config.journal.as_ref().unwrap().max_bytes,
            DEFAULT_JOURNAL_MAX_BYTES
        );
        assert_eq!(config.alerts.len(), 2);
        assert_eq!(config.alerts[0].events.len(), DEFAULT_ALERT_EVENTS.len());
        assert_eq!(
            config.alerts[1].events,
            vec![crate::events::EventKind::Failover]
        );

        let defaults = AgentConfig::parse(EXAMPLE).unwrap();
        assert_eq!(
            defaults.metrics_listen,
            Some(DEFAULT_METRICS_LISTEN.parse().unwrap())
        );
        assert!(defaults.journal.is_none() && defaults.alerts.is_empty());

        let bad = format!("{EXAMPLE}\n[[alerts]]\nwebhook = \"https://example.invalid\"\n");
        assert!(error_of(&bad).contains("http://"));
        let bad = format!("{EXAMPLE}\n[[alerts]]\nexec = [\"x\"]\nevents = [\"nope\"]\n");
        assert!(error_of(&bad).contains("unknown event"));
    }

    #[test]
    fn the_shipped_sample_config_is_valid() {
        let config = AgentConfig::parse(include_str!("../../dist/failover.toml")).unwrap();
        assert_eq!(config.services.len(), 2);
        assert!(config.journal.is_some() && config.alerts.len() == 1);
    }

    #[test]
    fn the_readme_configuration_is_valid() {
        // The first TOML block of the README with a service: what a new
        // operator copies.
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.contains("[[services]]") && block.contains("pin_dir"))
            .expect("the README shows a configuration");
        let config = AgentConfig::parse(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert!(config.journal.is_some());
        assert_eq!(config.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[test]
    fn table_size_must_be_prime_or_zero() {
        let with = |size: &str| {
            EXAMPLE.replace(
                "failback_delay = \"5s\"",
                &format!("failback_delay = \"5s\"\ntable_size = {size}"),
            )
        };
        assert_eq!(
            AgentConfig::parse(&with("251")).unwrap().services[0].table_size,
            251
        );
        assert_eq!(
            AgentConfig::parse(&with("0")).unwrap().services[0].table_size,
            0
        );
        assert_eq!(
            AgentConfig::parse(EXAMPLE).unwrap().services[0].table_size,
            crate::maglev::DEFAULT_TABLE_SIZE
        );
        assert!(error_of(&with("256")).contains("table_size"));
    }

    #[test]
    fn quorum_and_dead_flow_settings() {
        let with = |extra: &str| {
            EXAMPLE.replace(
                "failback_delay = \"5s\"",
                &format!("failback_delay = \"5s\"\n{extra}"),
            )
        };
        let plan = AgentConfig::parse(&with(
            "min_healthy = \"50%\"\nquorum_policy = \"fail_open\"\ndead_flows = \"keep\"",
        ))
        .unwrap()
        .services
        .remove(0);
        assert_eq!(
            plan.quorum,
            Some((
                crate::policy::Quorum::Percent(50),
                crate::policy::QuorumPolicy::FailOpen
            ))
        );
        assert_eq!(plan.dead_flows, crate::policy::DeadFlows::Keep);
        let plan = AgentConfig::parse(&with("min_healthy = 2"))
            .unwrap()
            .services
            .remove(0);
        assert_eq!(
            plan.quorum,
            Some((
                crate::policy::Quorum::Count(2),
                crate::policy::QuorumPolicy::NextTier
            ))
        );
        assert!(error_of(&with("min_healthy = \"lots\"")).contains("min_healthy"));
        assert!(error_of(&with("quorum_policy = \"fail_open\"")).contains("needs min_healthy"));
        assert!(error_of(&with("dead_flows = \"cut\"")).contains("dead_flows"));
    }

    #[test]
    fn cold_standby_settings() {
        let text = EXAMPLE.replace(
            "probe = { type = \"tcp\", interval = \"1s\", timeout = \"200ms\" }",
            "temperature = \"cold\"\nstart_command = [\"/usr/local/bin/start\", \"{address}\"]\nstart_timeout = \"20s\"",
        );
        let config = AgentConfig::parse(&text).unwrap();
        let standby = &config.services[0].backends[1];
        assert_eq!(standby.spec.state, crate::model::BackendState::Down);
        let cold = standby.cold.as_ref().unwrap();
        assert_eq!(cold.timeout, Duration::from_secs(20));
        assert_eq!(cold.command.as_ref().unwrap()[1], "{address}");
        let hot_primary = text.replace("tier = 0", "tier = 0\ntemperature = \"cold\"");
        assert!(error_of(&hot_primary).contains("less preferred tier"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1 fortnight"), None);
    }
}
