//! How a test sets up its lab: the probes, the layouts, killing a backend.

use std::time::Duration;

use failover_tests::{
    agent_lab::{AgentLab, BACKEND_PORT, Failback, HEALTH_PORT, Layout, Options, Probe},
    config::{Quorum, SetPolicies},
};

fn options(probe: Probe) -> Options {
    Options {
        probe,
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

/// Probes the traffic port: a stopped server fails them.
pub fn tcp_probe() -> Options {
    options(Probe::Tcp { port: BACKEND_PORT })
}

/// Probes the health endpoint: a backend can fail them and still serve.
pub fn health_probe() -> Options {
    options(Probe::Http { port: HEALTH_PORT })
}

pub fn three_active() -> Layout {
    Layout::tiers(&[("a", 0), ("b", 0), ("c", 0)])
}

pub fn three_and_a_standby() -> Layout {
    Layout::tiers(&[("a", 0), ("b", 0), ("c", 0), ("d", 1)]).min_healthy(Quorum::Count(2))
}

/// Stops backend `name`'s server (listener and established connections).
pub fn kill(lab: &mut AgentLab, name: &str) {
    let i = lab.layout().index(name);
    drop(lab.servers[i].take().expect("server running"));
}
