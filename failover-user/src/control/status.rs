//! The typed answer to `status`: what the agent serves, the CLI prints and
//! the tests read (one shape, checked by serde on both ends).

use serde::{Deserialize, Serialize};

use crate::outputs::telemetry::{EgressReport, Totals};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    pub services: Vec<ServiceStatus>,
    pub totals: Totals,
    pub uptime_s: f64,
    /// Egress interfaces the kernel drops redirected frames for.
    pub egress: EgressReport,
    /// A flow counts as active when seen within this many seconds.
    pub active_flow_idle_s: u64,
    /// When the active flows were last counted (none yet: `None`).
    pub active_flows_counted_s_ago: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub id: u32,
    pub vip: String,
    pub port: u16,
    pub protocol: String,
    /// Who takes new flows: the selection published in the data path.
    pub new_flows_to: Vec<String>,
    /// The target of the switchover in force.
    pub switchover: Option<String>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub id: u32,
    pub address: String,
    pub port: Option<u16>,
    pub tier: u8,
    /// Health from probes (rise/fall applied).
    pub healthy: bool,
    /// What the data path does with it: up, down, draining.
    pub state: String,
    /// Why, when not plain health: held, drained, maintenance, standing by.
    pub admin: Option<String>,
    pub active_flows: u64,
    pub packets_to: Option<u64>,
    pub packets_from: Option<u64>,
    pub last_probe: LastProbe,
    pub probes_ok: u64,
    pub probes_failed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastProbe {
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

impl StatusAnswer {
    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl ServiceStatus {
    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendStatus> {
        self.backends.iter().find(|b| b.name == name)
    }
}
