//! Probes that timed out are checked against the data path before they
//! take a backend out (`decide::second_opinion`): the evidence at the
//! first failure of their run and now, and how late the agent's timers
//! fired meanwhile ([`super::lag::LagMeter`]).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Agent;
use crate::{
    config::ProbeKind,
    decide::{
        health::Flip,
        second_opinion::{Opinion, judge},
    },
    probe::ProbeOutcome,
};

/// A kept backend is logged at most this often.
const KEPT_LOG_EVERY: Duration = Duration::from_secs(10);

impl Agent {
    /// Notes the backend's evidence at the first failure of a run of
    /// failed probes; a success ends the run.
    pub(super) fn note_streak(&mut self, s: usize, b: usize, outcome: &ProbeOutcome) {
        let backend = &mut self.services[s].backends[b];
        if outcome.ok {
            backend.streak_evidence = None;
            return;
        }
        if backend.streak_evidence.is_some() || !backend.health.healthy() {
            return;
        }
        if let Ok(evidence) = self.dataplane.counters().evidence(backend.id) {
            backend.streak_evidence = Some((outcome.at, evidence));
        }
    }

    /// Whether the data path contradicts `flip` (to unhealthy, from the
    /// probes) of backend `b` of service `s`: if so it stays healthy.
    pub(super) fn kept_by_the_data_path(&mut self, s: usize, b: usize, flip: &Flip) -> bool {
        let service = &self.services[s];
        let plan = &service.plan.backends[b];
        let Some((since, before)) = service.backends[b].streak_evidence else {
            return false;
        };
        let Ok(now) = self.dataplane.counters().evidence(service.backends[b].id) else {
            return false;
        };
        let fall = plan.probe.fall.max(1) as usize;
        let failed: Vec<ProbeOutcome> = flip.evidence.iter().rev().take(fall).cloned().collect();
        let traffic_port = plan.spec.port.unwrap_or(service.plan.spec.port);
        let probes_the_traffic_port =
            matches!(plan.probe.kind, ProbeKind::Tcp { port } if port == traffic_port);
        let lag = self.lag.worst_since(since);
        let opinion = judge(
            &failed,
            (before, now),
            probes_the_traffic_port,
            plan.probe.timeout,
            lag,
        );
        let service = &mut self.services[s];
        let backend = &mut service.backends[b];
        match opinion {
            Opinion::None => false,
            Opinion::Slow(why) => {
                info!(service = %service.name, backend = %backend.name, "probes failing: {why}");
                false
            }
            Opinion::Keep(why) => {
                backend.health.keep_healthy();
                backend.streak_evidence = None;
                let now = Instant::now();
                if backend
                    .kept_logged_at
                    .is_none_or(|at| now.duration_since(at) >= KEPT_LOG_EVERY)
                {
                    backend.kept_logged_at = Some(now);
                    warn!(service = %service.name, backend = %backend.name, "kept healthy although its probes failed: {why}");
                }
                true
            }
        }
    }
}
