//! The agent's configuration file as the tests and benches write it: one
//! typed builder ([`ConfigToml`] with its [`ServiceToml`]s, their
//! [`ProbeToml`] and [`BackendToml`]s) rendered to TOML by
//! [`ConfigToml::render`]. Key names follow the agent's schema
//! (`failover-user/src/config/raw.rs`); a key left `None` is left out, so
//! the agent's default applies.
//!
//! A configuration is changed by changing the value (a service added with
//! [`ConfigToml::service`], a backend's tier set through
//! [`ConfigToml::service_mut`]) and rendering it again, never by editing
//! the text.
//!
//! ```
//! use std::{net::Ipv4Addr, time::Duration};
//! use failover_tests::config::{BackendToml, ConfigToml, ProbeToml, ServiceToml};
//!
//! let config = ConfigToml::new().metrics("").service(
//!     ServiceToml::tcp("web", Ipv4Addr::new(203, 0, 113, 10), 80)
//!         .probe(ProbeToml::tcp().interval(Duration::from_millis(100)))
//!         .backend(BackendToml::new("a", Ipv4Addr::new(198, 51, 100, 2)).port(8080)),
//! );
//! assert!(config.render().contains("[[services.backends]]\nname = \"a\"\n"));
//! ```

mod keywords;
mod render;
mod service;
#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use self::render::Toml;
pub use self::{
    keywords::{
        DeadFlows, FailbackMode, ProbeType, Protocol, Quorum, QuorumPolicy, Redundancy,
        Temperature, XdpMode,
    },
    service::{
        BackendToml, DampingToml, PassiveToml, Policies, ProbeToml, ServiceToml, SetPolicies,
    },
};

/// A whole configuration file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigToml {
    pub pin_dir: Option<PathBuf>,
    /// `[control] socket`.
    pub control_socket: Option<PathBuf>,
    /// `[metrics] listen`; `""` turns the endpoint off.
    pub metrics_listen: Option<String>,
    /// `[journal] path`.
    pub journal: Option<PathBuf>,
    pub interfaces: Vec<InterfaceToml>,
    pub services: Vec<ServiceToml>,
    pub alerts: Vec<AlertToml>,
    /// `[conntrack]`.
    pub conntrack: ConntrackToml,
    /// `[routing]`.
    pub routing: Option<RoutingToml>,
    /// `[sync]`.
    pub sync: Option<SyncToml>,
}

/// The `[conntrack]` table's keys (written when any is set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConntrackToml {
    pub max_flows: Option<u32>,
    pub tcp_timeout: Option<Duration>,
    pub tcp_closing_timeout: Option<Duration>,
    /// The flood guard's rate.
    pub max_new_flows_per_cpu: Option<u32>,
}

/// A `[sync]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncToml {
    pub listen: std::net::SocketAddr,
    pub peers: Vec<std::net::SocketAddr>,
    pub interval: Option<Duration>,
}

/// A `[routing]` table (`daemon = "bird"`); `None` keys are left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutingToml {
    pub table: Option<u32>,
    pub device: Option<String>,
    pub when_unusable: Option<String>,
    pub drain_file: Option<PathBuf>,
}

impl ConfigToml {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn pin_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.pin_dir = Some(path.into());
        self
    }

    pub fn control_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.control_socket = Some(path.into());
        self
    }

    /// The metrics endpoint (`"127.0.0.1:9392"`; `""` turns it off).
    pub fn metrics(mut self, listen: impl Into<String>) -> Self {
        self.metrics_listen = Some(listen.into());
        self
    }

    /// The event journal's file.
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    /// The flood guard's rate (`[conntrack] max_new_flows_per_cpu`).
    pub fn max_new_flows_per_cpu(mut self, rate: u32) -> Self {
        self.conntrack.max_new_flows_per_cpu = Some(rate);
        self
    }

    /// The flow table's size (`[conntrack] max_flows`).
    pub fn max_flows(mut self, entries: u32) -> Self {
        self.conntrack.max_flows = Some(entries);
        self
    }

    /// How long an open TCP flow, and one closing, live without packets.
    pub fn tcp_timeouts(mut self, open: Duration, closing: Duration) -> Self {
        self.conntrack.tcp_timeout = Some(open);
        self.conntrack.tcp_closing_timeout = Some(closing);
        self
    }

    /// Adds an `[[interfaces]]` table.
    pub fn interface(mut self, name: impl Into<String>, mode: XdpMode) -> Self {
        self.interfaces.push(InterfaceToml::new(name).mode(mode));
        self
    }

    /// Adds a `[[services]]` table.
    pub fn service(mut self, service: ServiceToml) -> Self {
        self.services.push(service);
        self
    }

    /// Adds an `[[alerts]]` table.
    pub fn alert(mut self, alert: AlertToml) -> Self {
        self.alerts.push(alert);
        self
    }

    /// The service called `name`, changed by `change`.
    pub fn with_service(
        mut self,
        name: &str,
        change: impl FnOnce(ServiceToml) -> ServiceToml,
    ) -> Self {
        let at = self.service_index(name);
        let service = self.services.remove(at);
        self.services.insert(at, change(service));
        self
    }

    /// The service called `name` (panics if there is none).
    pub fn service_mut(&mut self, name: &str) -> &mut ServiceToml {
        let at = self.service_index(name);
        &mut self.services[at]
    }

    /// Removes the service called `name` (panics if there is none).
    pub fn remove_service(&mut self, name: &str) -> ServiceToml {
        let at = self.service_index(name);
        self.services.remove(at)
    }

    fn service_index(&self, name: &str) -> usize {
        self.services
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name} in the config"))
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = Toml::default();
        out.opt("pin_dir", self.pin_dir.as_deref());
        if let Some(socket) = &self.control_socket {
            out.table("[control]");
            out.key("socket", socket.as_path());
        }
        if let Some(listen) = &self.metrics_listen {
            out.table("[metrics]");
            out.key("listen", listen);
        }
        if let Some(path) = &self.journal {
            out.table("[journal]");
            out.key("path", path.as_path());
        }
        let conntrack = &self.conntrack;
        if *conntrack != ConntrackToml::default() {
            out.table("[conntrack]");
            out.opt("max_flows", conntrack.max_flows);
            out.opt("tcp_timeout", conntrack.tcp_timeout);
            out.opt("tcp_closing_timeout", conntrack.tcp_closing_timeout);
            out.opt("max_new_flows_per_cpu", conntrack.max_new_flows_per_cpu);
        }
        if let Some(routing) = &self.routing {
            out.table("[routing]");
            out.key("daemon", "bird");
            out.opt("table", routing.table);
            out.opt("device", routing.device.as_ref());
            out.opt("when_unusable", routing.when_unusable.as_ref());
            out.opt("drain_file", routing.drain_file.as_deref());
        }
        if let Some(sync) = &self.sync {
            out.table("[sync]");
            out.key("listen", sync.listen.to_string());
            out.key(
                "peers",
                sync.peers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            );
            out.opt("interval", sync.interval);
        }
        for interface in &self.interfaces {
            out.table("[[interfaces]]");
            out.key("name", &interface.name);
            out.opt("mode", interface.mode);
        }
        for service in &self.services {
            service.render(&mut out);
        }
        for alert in &self.alerts {
            out.table("[[alerts]]");
            out.opt("webhook", alert.webhook.as_ref());
            out.opt("timeout", alert.timeout);
            out.opt("retries", alert.retries);
        }
        out.text
    }

    /// With `[routing]`.
    pub fn routing(mut self, routing: RoutingToml) -> Self {
        self.routing = Some(routing);
        self
    }

    /// With `[sync]`.
    pub fn sync(mut self, sync: SyncToml) -> Self {
        self.sync = Some(sync);
        self
    }

    /// Renders the file to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.render())
            .unwrap_or_else(|e| panic!("write the config {}: {e}", path.display()));
    }
}

/// An `[[interfaces]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceToml {
    pub name: String,
    pub mode: Option<XdpMode>,
}

impl InterfaceToml {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            mode: None,
        }
    }

    pub fn mode(mut self, mode: XdpMode) -> Self {
        self.mode = Some(mode);
        self
    }
}

/// An `[[alerts]]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertToml {
    pub webhook: Option<String>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
}

impl AlertToml {
    /// POSTs events to `url`.
    pub fn webhook(url: impl Into<String>) -> Self {
        Self {
            webhook: Some(url.into()),
            timeout: None,
            retries: None,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }
}
