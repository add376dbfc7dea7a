//! A `[[services]]` table: the service's keys, its probe and its backends.

use std::{net::IpAddr, time::Duration};

use super::{
    keywords::{
        DeadFlows, FailbackMode, ProbeType, Protocol, Quorum, QuorumPolicy, Redundancy, Temperature,
    },
    render::Toml,
};

/// A `[[services]]` table with its probe and backends.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceToml {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub failback: Option<FailbackMode>,
    pub failback_delay: Option<Duration>,
    /// Maglev table slots; 0 hashes over the backends directly.
    pub table_size: Option<u32>,
    pub policies: Policies,
    /// `[services.probe]` (left out when no key is set).
    pub probe: ProbeToml,
    /// `[services.passive]` (left out when `None`: passive detection off).
    pub passive: Option<PassiveToml>,
    /// `[services.damping]` (left out when `None`: flap damping off).
    pub damping: Option<DampingToml>,
    pub backends: Vec<BackendToml>,
}

/// A `[services.damping]` table; `None` keys are left out (defaults).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DampingToml {
    pub half_life: Option<Duration>,
    pub suppress: Option<u32>,
    pub reuse: Option<u32>,
    pub max_suppress: Option<Duration>,
    pub penalty: Option<u32>,
}

/// A `[services.passive]` table; `None` keys are left out (defaults).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassiveToml {
    pub window: Option<Duration>,
    pub resets: Option<u64>,
    pub unreachable: Option<u64>,
    pub unanswered: Option<u64>,
    pub syn_timeout: Option<Duration>,
    pub max_ejected_percent: Option<u32>,
}

impl ServiceToml {
    pub fn new(
        name: impl Into<String>,
        vip: impl Into<IpAddr>,
        port: u16,
        protocol: Protocol,
    ) -> Self {
        Self {
            name: name.into(),
            vip: vip.into(),
            port,
            protocol,
            failback: None,
            failback_delay: None,
            table_size: None,
            policies: Policies::default(),
            probe: ProbeToml::default(),
            passive: None,
            damping: None,
            backends: Vec::new(),
        }
    }

    pub fn tcp(name: impl Into<String>, vip: impl Into<IpAddr>, port: u16) -> Self {
        Self::new(name, vip, port, Protocol::Tcp)
    }

    pub fn udp(name: impl Into<String>, vip: impl Into<IpAddr>, port: u16) -> Self {
        Self::new(name, vip, port, Protocol::Udp)
    }

    /// `failback = "auto"` after `delay`.
    pub fn failback_auto(mut self, delay: Duration) -> Self {
        self.failback = Some(FailbackMode::Auto);
        self.failback_delay = Some(delay);
        self
    }

    /// `failback = "manual"`.
    pub fn failback_manual(mut self) -> Self {
        self.failback = Some(FailbackMode::Manual);
        self.failback_delay = None;
        self
    }

    pub fn table_size(mut self, slots: u32) -> Self {
        self.table_size = Some(slots);
        self
    }

    pub fn probe(mut self, probe: ProbeToml) -> Self {
        self.probe = probe;
        self
    }

    /// Adds a `[[services.backends]]` table.
    pub fn backend(mut self, backend: BackendToml) -> Self {
        self.backends.push(backend);
        self
    }

    /// The backend called `name`, changed by `change`.
    pub fn with_backend(
        mut self,
        name: &str,
        change: impl FnOnce(BackendToml) -> BackendToml,
    ) -> Self {
        let at = self.backend_index(name);
        let backend = self.backends.remove(at);
        self.backends.insert(at, change(backend));
        self
    }

    /// The backend called `name` (panics if there is none).
    pub fn backend_mut(&mut self, name: &str) -> &mut BackendToml {
        let at = self.backend_index(name);
        &mut self.backends[at]
    }

    fn backend_index(&self, name: &str) -> usize {
        self.backends
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name} in service {}", self.name))
    }

    pub(super) fn render(&self, out: &mut Toml) {
        out.table("[[services]]");
        out.key("name", &self.name);
        out.key("vip", self.vip);
        out.key("port", self.port);
        out.key("protocol", self.protocol);
        out.opt("failback", self.failback);
        out.opt("failback_delay", self.failback_delay);
        out.opt("table_size", self.table_size);
        out.opt("mode", self.policies.redundancy);
        out.opt("dead_flows", self.policies.dead_flows);
        out.opt("min_healthy", self.policies.min_healthy);
        out.opt("quorum_policy", self.policies.quorum_policy);
        out.opt("redispatch", self.policies.redispatch);
        out.opt("slow_start", self.policies.slow_start);
        if self.probe != ProbeToml::default() {
            out.table("[services.probe]");
            self.probe.render(out);
        }
        if let Some(passive) = &self.passive {
            out.table("[services.passive]");
            out.opt("window", passive.window);
            out.opt("resets", passive.resets);
            out.opt("unreachable", passive.unreachable);
            out.opt("unanswered", passive.unanswered);
            out.opt("syn_timeout", passive.syn_timeout);
            out.opt("max_ejected_percent", passive.max_ejected_percent);
        }
        if let Some(damping) = &self.damping {
            out.table("[services.damping]");
            out.opt("half_life", damping.half_life);
            out.opt("suppress", damping.suppress);
            out.opt("reuse", damping.reuse);
            out.opt("max_suppress", damping.max_suppress);
            out.opt("penalty", damping.penalty);
        }
        for backend in &self.backends {
            out.table("[[services.backends]]");
            backend.render(out);
        }
    }
}

impl SetPolicies for ServiceToml {
    fn policies_mut(&mut self) -> &mut Policies {
        &mut self.policies
    }
}

/// A service's policy keys; one left `None` is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Policies {
    /// `mode`: the redundancy mode.
    pub redundancy: Option<Redundancy>,
    pub dead_flows: Option<DeadFlows>,
    pub min_healthy: Option<Quorum>,
    pub quorum_policy: Option<QuorumPolicy>,
    /// `redispatch`: SYNs a backend refuses go to another (default on).
    pub redispatch: Option<bool>,
    /// `slow_start`: a returning backend's share ramps up over this.
    pub slow_start: Option<Duration>,
}

/// The setters of a service's [`Policies`], for whatever states them: a
/// `[[services]]` table, or the agent lab's `Layout` of its web service.
pub trait SetPolicies: Sized {
    fn policies_mut(&mut self) -> &mut Policies;

    /// `mode` (e.g. [`Redundancy::NPlusOne`]).
    fn redundancy(mut self, mode: Redundancy) -> Self {
        self.policies_mut().redundancy = Some(mode);
        self
    }

    fn dead_flows(mut self, policy: DeadFlows) -> Self {
        self.policies_mut().dead_flows = Some(policy);
        self
    }

    fn min_healthy(mut self, quorum: Quorum) -> Self {
        self.policies_mut().min_healthy = Some(quorum);
        self
    }

    fn quorum_policy(mut self, policy: QuorumPolicy) -> Self {
        self.policies_mut().quorum_policy = Some(policy);
        self
    }

    fn redispatch(mut self, on: bool) -> Self {
        self.policies_mut().redispatch = Some(on);
        self
    }

    fn slow_start(mut self, over: Duration) -> Self {
        self.policies_mut().slow_start = Some(over);
        self
    }
}

/// A probe table (`[services.probe]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeToml {
    /// `type`.
    pub kind: Option<ProbeType>,
    pub port: Option<u16>,
    /// http: the path to GET.
    pub path: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

impl ProbeToml {
    /// `type = "tcp"`: a connect.
    pub fn tcp() -> Self {
        Self {
            kind: Some(ProbeType::Tcp),
            ..Self::default()
        }
    }

    /// `type = "http"`: a GET of `path`.
    pub fn http(path: impl Into<String>) -> Self {
        Self {
            kind: Some(ProbeType::Http),
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// The port to probe (the backend's own unless set).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn rise(mut self, rise: u32) -> Self {
        self.rise = Some(rise);
        self
    }

    pub fn fall(mut self, fall: u32) -> Self {
        self.fall = Some(fall);
        self
    }

    fn render(&self, out: &mut Toml) {
        out.opt("type", self.kind);
        out.opt("port", self.port);
        out.opt("path", self.path.as_ref());
        out.opt("interval", self.interval);
        out.opt("timeout", self.timeout);
        out.opt("rise", self.rise);
        out.opt("fall", self.fall);
    }
}

/// A `[[services.backends]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendToml {
    pub name: String,
    pub address: IpAddr,
    /// The port traffic is sent to (the service's unless set).
    pub port: Option<u16>,
    pub tier: Option<u8>,
    pub weight: Option<u32>,
    pub temperature: Option<Temperature>,
    /// cold: the program and arguments that start it.
    pub start_command: Option<Vec<String>>,
    pub start_timeout: Option<Duration>,
    pub start_retry: Option<Duration>,
}

impl BackendToml {
    pub fn new(name: impl Into<String>, address: impl Into<IpAddr>) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            port: None,
            tier: None,
            weight: None,
            temperature: None,
            start_command: None,
            start_timeout: None,
            start_retry: None,
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn tier(mut self, tier: u8) -> Self {
        self.tier = Some(tier);
        self
    }

    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }

    pub fn temperature(mut self, temperature: Temperature) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// A cold backend: `command` starts it; it gets `timeout` to come up
    /// and is tried again after `retry`.
    pub fn cold(mut self, command: &[&str], timeout: Duration, retry: Duration) -> Self {
        self.temperature = Some(Temperature::Cold);
        self.start_command = Some(command.iter().map(|s| (*s).to_owned()).collect());
        self.start_timeout = Some(timeout);
        self.start_retry = Some(retry);
        self
    }

    fn render(&self, out: &mut Toml) {
        out.key("name", &self.name);
        out.key("address", self.address);
        out.opt("port", self.port);
        out.opt("tier", self.tier);
        out.opt("weight", self.weight);
        out.opt("temperature", self.temperature);
        out.opt("start_command", self.start_command.as_ref());
        out.opt("start_timeout", self.start_timeout);
        out.opt("start_retry", self.start_retry);
    }
}
