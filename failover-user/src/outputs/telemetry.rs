//! What the agent knows about each service and backend, shared read-only with
//! the metrics endpoint and the control API's `status`. The decision loop is
//! the only writer; readers take a consistent snapshot under a short lock.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::probe::ProbeError;

/// Upper bounds (seconds) of the probe latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeStats {
    pub ok_total: u64,
    pub failed_total: u64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`] (Prometheus style).
    pub latency_buckets: [u64; LATENCY_BUCKETS.len()],
    pub latency_count: u64,
    pub latency_sum_seconds: f64,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<f64>,
}

impl ProbeStats {
    pub fn record(&mut self, ok: bool, latency: Duration, error: Option<&ProbeError>) {
        if ok {
            self.ok_total += 1;
        } else {
            self.failed_total += 1;
        }
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.latency_count += 1;
        self.latency_sum_seconds += seconds;
        // With its causes: "connect: Connection refused (os error 111)".
        self.last_error = error.map(|err| crate::util::chain(err).to_string());
        self.last_latency_ms = Some(seconds * 1000.0);
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendView {
    pub name: String,
    pub id: u32,
    pub address: String,
    pub port: Option<u16>,
    pub tier: u8,
    /// Its configured Maglev weight (its share among the backends taking
    /// new flows).
    #[serde(default)]
    pub weight: u32,
    /// Health from probes (rise/fall applied).
    pub healthy: bool,
    /// What the data path does with it: up, down, draining.
    pub state: String,
    /// Why it is in that state when not plain health: held (failback
    /// pending), drained, maintenance.
    pub admin: Option<String>,
    /// Flap damping (services with `[services.damping]`): the penalty now,
    /// and how long it stays suppressed if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damping_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_for_s: Option<f64>,
    /// Slow start: the share of its weight new flows see while it ramps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start_share: Option<f64>,
    pub probe: ProbeStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub id: u32,
    pub vip: String,
    pub port: u16,
    pub protocol: String,
    /// Backends that take new flows now.
    pub active: Vec<String>,
    /// The target of the switchover in force, if any.
    pub switched_to: Option<String>,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Health flips of any backend.
    pub transitions_total: u64,
    /// Unplanned switches of new flows away from failed backends.
    pub failovers_total: u64,
    pub failbacks_total: u64,
    /// Map writes that failed (each is retried until the maps agree).
    pub map_write_failures_total: u64,
    /// Services whose maps do not carry the agent's decisions yet.
    pub services_out_of_sync: u64,
    /// First failed probe to map update, of the last failover.
    pub last_failover_gap_seconds: Option<f64>,
    /// Every change of who takes new flows, by service, whether it was
    /// planned (an operator's) or not, and its reason.
    pub switches: Vec<SwitchCount>,
}

/// Changes of who takes new flows of one service for one reason.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SwitchCount {
    pub service: String,
    /// `planned` (an operator's request) or `unplanned` (health, timers).
    pub kind: String,
    /// What caused it: `backend failed`, `backend recovered`, `switchover`, ...
    pub reason: String,
    pub total: u64,
}

impl Totals {
    /// Counts one change of who takes new flows.
    pub fn count_switch(&mut self, service: &str, planned: bool, reason: &'static str) {
        let kind = if planned { "planned" } else { "unplanned" };
        match self
            .switches
            .iter_mut()
            .find(|c| c.service == service && c.kind == kind && c.reason == reason)
        {
            Some(count) => count.total += 1,
            None => self.switches.push(SwitchCount {
                service: service.to_owned(),
                kind: kind.to_owned(),
                reason: reason.to_owned(),
                total: 1,
            }),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub services: Vec<ServiceView>,
    pub totals: Totals,
    pub started_seconds_ago: f64,
    /// Egress interfaces the kernel drops redirected frames for.
    pub egress: EgressReport,
    /// `[routing]`: every VIP's announcement (empty when routing is off).
    pub announcements: Vec<AnnouncementView>,
    /// `[sync]`: the pinned flows shared with the other edge hosts.
    pub sync: Option<crate::flow_sync::SyncView>,
    /// The last events, oldest first, as the journal writes them
    /// (`outputs::recent`).
    pub recent_events: std::collections::VecDeque<serde_json::Value>,
    /// The flow table at the agent's last walk of it (`agent/flows`; none
    /// before the first).
    pub flows: Option<FlowsView>,
}

/// What the last walk of the flow table found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FlowsView {
    /// Entries in the table (expired ones included until reclaimed).
    pub entries: u64,
    /// Flows seen within the last few seconds, by backend id.
    pub active_by_backend: std::collections::BTreeMap<u32, u64>,
}

/// A VIP's announcement to the routing daemon, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementView {
    pub vip: String,
    pub announced: bool,
    pub why: String,
}

/// What the egress watch found, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EgressReport {
    /// Whether the kernel's redirect drops are watched at all.
    pub watching: bool,
    /// Interfaces the kernel dropped redirected frames for.
    pub interfaces: Vec<EgressStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EgressStatus {
    pub interface: String,
    pub ifindex: u32,
    /// Frames dropped since the agent started.
    pub redirect_drops: u64,
    /// Its packets go through the kernel stack.
    pub via_stack: bool,
}

/// The shared view. Cloning shares it.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Mutex<(Snapshot, Instant)>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new((Snapshot::default(), Instant::now()))),
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut snapshot = guard.0.clone();
        snapshot.started_seconds_ago = guard.1.elapsed().as_secs_f64();
        snapshot
    }

    /// Changes the state: the decision loop, and the threads that own a
    /// part of it alone (`recent`, the flow counter, `[sync]`, the egress
    /// watch).
    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut guard.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut stats = ProbeStats::default();
        stats.record(true, Duration::from_micros(300), None);
        stats.record(
            false,
            Duration::from_millis(30),
            Some(&ProbeError::TimedOut(Duration::from_millis(30))),
        );
        assert_eq!(stats.latency_buckets[0], 1);
        assert_eq!(stats.latency_buckets[5], 1); // <= 25 ms: only the first
        assert_eq!(stats.latency_buckets[6], 2); // <= 50 ms: both
        assert_eq!(*stats.latency_buckets.last().unwrap(), 2);
        assert_eq!(
            (stats.ok_total, stats.failed_total, stats.latency_count),
            (1, 1, 2)
        );
        assert_eq!(stats.last_error.as_deref(), Some("timed out after 30ms"));
    }
}
