//! The typed answer to `status`: what the agent serves, the CLI prints and
//! the tests read (one shape, checked by serde on both ends).

use serde::{Deserialize, Serialize};

use crate::outputs::telemetry::{AnnouncementView, BackendView, EgressReport, Totals};

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
    /// Entries in the flow table at that count (expired ones included
    /// until reclaimed).
    #[serde(default)]
    pub flow_entries: u64,
    /// Expired flow entries this agent reclaimed.
    #[serde(default)]
    pub flows_reclaimed_total: u64,
    /// `[routing]`: every VIP's announcement (empty when routing is off).
    #[serde(default)]
    pub announcements: Vec<AnnouncementView>,
    /// `failover host drain` is in force.
    #[serde(default)]
    pub host_drained: bool,
    /// `[sync]`: the pinned flows shared with the other edge hosts (none
    /// when sync is off).
    #[serde(default)]
    pub sync: Option<crate::flow_sync::SyncView>,
    /// The last events (at most `outputs::recent::RECENT_EVENTS`), oldest
    /// first, as the journal writes them.
    #[serde(default)]
    pub recent_events: Vec<serde_json::Value>,
    /// Where the metrics endpoint and the status page listen (none: off).
    #[serde(default)]
    pub page_listen: Option<String>,
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

/// A backend as the agent sees it (the telemetry view: health, state,
/// why, probe statistics) and its traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    #[serde(flatten)]
    pub view: BackendView,
    pub active_flows: u64,
    pub packets_to: Option<u64>,
    pub packets_from: Option<u64>,
}

impl std::ops::Deref for BackendStatus {
    type Target = BackendView;

    fn deref(&self) -> &BackendView {
        &self.view
    }
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
