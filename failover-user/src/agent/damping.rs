//! Flap damping in the agent (`[services.damping]`): every failure of a
//! backend — its probes' or the data path's evidence — adds to its penalty
//! (`decide::damping`); past `suppress`, the policy keeps it out of new
//! flows until the penalty decays below `reuse`, told in the log, the
//! journal, status and metrics.

use std::time::Instant;

use tracing::{info, warn};

use super::Agent;
use crate::{
    decide::policy::Change,
    events::{Event, EventKind},
};

impl Agent {
    /// Backend `b` of service `s` failed at `now`: its penalty grows, and
    /// past `suppress` it is suppressed (or stays so longer). Returns the
    /// data-path changes.
    pub(super) fn damp(&mut self, s: usize, b: usize, now: Instant) -> Vec<Change> {
        let service = &mut self.services[s];
        let Some(settings) = service.plan.damping else {
            return Vec::new();
        };
        let was = service.policy.suppressed_until(b);
        let backend = &mut service.backends[b];
        let Some(until) = backend.damping.failed(now, &settings, was.is_some()) else {
            return Vec::new();
        };
        let changes = service.policy.suppress(b, until, now);
        if was.is_none() {
            let penalty = backend.damping.penalty(now, &settings).round();
            let for_s = until.duration_since(now).as_secs_f64();
            warn!(service = %service.name, backend = %backend.name, penalty, suppress = settings.suppress, reuse = settings.reuse, suppressed_for_s = format!("{for_s:.1}"), "backend suppressed: flapping; no new flows until its penalty decays below reuse");
            self.events.publish(
                Event::new(
                    EventKind::BackendSuppressed,
                    format!(
                        "{}/{} is suppressed (flapping): no new flows for {for_s:.1}s",
                        service.name, backend.name
                    ),
                )
                .service(&service.name)
                .backend(&backend.name)
                .details(serde_json::json!({
                    "penalty": penalty,
                    "suppress": settings.suppress,
                    "reuse": settings.reuse,
                    "suppressed_for_s": for_s,
                })),
            );
        }
        changes
    }

    /// Which backends of service `s` are suppressed (before a tick).
    pub(super) fn suppressed(&self, s: usize) -> Vec<bool> {
        let service = &self.services[s];
        (0..service.backends.len())
            .map(|b| service.policy.suppressed_until(b).is_some())
            .collect()
    }

    /// Tells of the backends of service `s` a tick reused (`before`: which
    /// were suppressed).
    pub(super) fn report_reused(&mut self, s: usize, before: &[bool]) {
        let service = &self.services[s];
        for (b, was) in before.iter().enumerate() {
            if !*was || service.policy.suppressed_until(b).is_some() {
                continue;
            }
            let backend = &service.backends[b];
            info!(service = %service.name, backend = %backend.name, healthy = backend.health.healthy(), "backend reused: its flap-damping penalty decayed below reuse");
            self.events.publish(
                Event::new(
                    EventKind::BackendReused,
                    format!("{}/{} is no longer suppressed", service.name, backend.name),
                )
                .service(&service.name)
                .backend(&backend.name),
            );
        }
    }
}
