//! Why the agent refuses an operator request, typed. The control socket
//! answers with the error and its causes as one line.

use std::{io, path::PathBuf};

use crate::{
    config::ConfigError,
    dataplane::{CapacityError, error::DataplaneError},
    decide::policy::Refused,
};

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("no service {0:?}")]
    NoService(String),
    #[error("service {service:?} has no backend {backend:?}")]
    NoBackendInService { service: String, backend: String },
    #[error("no backend {0:?}")]
    NoBackend(String),
    #[error("backend {0:?} exists in several services; say service/backend")]
    AmbiguousBackend(String),
    #[error("{what} {name}")]
    Refused {
        what: &'static str,
        name: String,
        #[source]
        reason: Refused,
    },
    #[error("deadline_s {seconds} is out of bounds: must be {bounds}")]
    DeadlineOutOfBounds { seconds: f64, bounds: String },
    #[error("encoding the answer")]
    Encode(#[source] serde_json::Error),
    #[error(
        "this host announces nothing: draining it needs [routing] in the configuration (without \
         it the routers do not learn of this host from failover)"
    )]
    NoRouting,
    #[error(
        "the host is recorded as drained, but {0} could not be withdrawn (the agent's log says \
         why; it tries again): do not stop the host yet"
    )]
    StillAnnounced(String),
    #[error("{}", path.display())]
    DrainFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Reload(#[from] ReloadError),
}

/// A reload the agent refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("pin_dir cannot change on reload (restart the agent)")]
    PinDirChanged,
    #[error("control, metrics, journal, alert, routing and sync settings change only on restart")]
    RestartOnly,
    #[error(
        "[conntrack] max_flows changes only on restart (from {from} to {to}), and then only \
         after `failover detach`: a flow table's size is fixed when it is created"
    )]
    MaxFlowsChanged { from: u32, to: u32 },
    #[error("refused, nothing changed")]
    Capacity(#[source] CapacityError),
    #[error("refused, nothing changed: interface {interface}")]
    Interface {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "applying the new configuration failed; the previous state is restored, nothing changed"
    )]
    Apply(#[source] DataplaneError),
}
