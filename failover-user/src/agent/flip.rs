//! A probe result's way through the agent: the backend's health, then the
//! service's policy, then the maps, then what it changed is told.

use std::time::Instant;

use tracing::{info, warn};

use super::{
    Agent,
    probes::ProbeEvent,
    runtime::{self, Cause},
};
use crate::{
    decide::health::Flip,
    events::{Event, EventKind},
};

impl Agent {
    /// Records a probe result; returns whether it flipped a backend's health.
    pub(super) fn on_probe(&mut self, event: ProbeEvent) -> bool {
        if event.service >= self.services.len()
            || event.backend >= self.services[event.service].backends.len()
        {
            return false;
        }
        self.note_streak(event.service, event.backend, &event.outcome);
        let service = &mut self.services[event.service];
        let Some(flip) = service.record_probe(event.backend, event.outcome) else {
            // Most results change nothing but the statistics: update only those
            // (a full refresh reads every backend's map slot).
            let stats = service.backends[event.backend].stats.clone();
            self.telemetry.update(|snapshot| {
                if let Some(view) = snapshot
                    .services
                    .get_mut(event.service)
                    .and_then(|s| s.backends.get_mut(event.backend))
                {
                    view.probe = stats;
                }
            });
            return false;
        };
        if !flip.healthy && self.kept_by_the_data_path(event.service, event.backend, &flip) {
            return false;
        }
        self.on_flip(event.service, event.backend, flip)
    }

    /// Acts on a backend's health flip (from its probes or the data path's
    /// evidence): the service's policy, the maps, then what changed is
    /// told. Returns true (something moved).
    pub(super) fn on_flip(&mut self, s: usize, b: usize, flip: Flip) -> bool {
        if flip.healthy {
            // Evidence from before it recovered does not count against it.
            self.services[s].backends[b].watch.clear();
        }
        self.totals.transitions_total += 1;
        // The data path first: the decision reaches the maps before anything
        // is logged or published.
        let now = Instant::now();
        let service = &mut self.services[s];
        let before = service.active_names(&self.dataplane);
        let pinned = service.policy.switched_to();
        let mut changes = service.policy.on_health(b, flip.healthy, now);
        if let Some(target) = pinned
            && service.policy.switched_to().is_none()
        {
            warn!(service = %service.name, target = %service.backends[target].name, "switchover ended: its target failed; tiers and health decide again");
        }
        let cause = if flip.healthy {
            Cause::Recovered
        } else {
            Cause::Failed {
                first_failure: flip.first_failure_at,
                // An ejection decides when the evidence was read.
                decided: if flip.passive.is_some() {
                    flip.first_failure_at
                } else {
                    flip.evidence.last().map(|o| o.at + o.latency)
                },
            }
        };
        if !flip.healthy {
            changes.extend(self.damp(s, b, now));
        }
        let decided_to_map = self.write_changes(s, &changes, cause);
        let service = &self.services[s];
        let backend_name = service.backends[b].name.clone();
        let address = service.plan.backends[b].spec.addr;
        let in_maintenance = service.policy.admin(b) == crate::decide::policy::Admin::Maintenance;
        // Quoted (`?`): the evidence has spaces, and log readers split fields.
        let evidence = runtime::evidence(&flip);
        if flip.healthy {
            info!(service = %service.name, backend = %backend_name, %address, ?evidence, "backend healthy");
        } else {
            warn!(service = %service.name, backend = %backend_name, %address, ?evidence, "backend unhealthy");
        }
        if !in_maintenance {
            let kind = if flip.healthy {
                EventKind::BackendUp
            } else {
                EventKind::BackendDown
            };
            self.events.publish(
                Event::new(
                    kind,
                    format!(
                        "{}/{backend_name} is {}",
                        service.name,
                        if flip.healthy { "healthy" } else { "unhealthy" }
                    ),
                )
                .service(&service.name)
                .backend(&backend_name)
                .details(serde_json::json!({"evidence": evidence})),
            );
        }
        self.report_changes(s, before, &changes, cause, decided_to_map);
        let service = &self.services[s];
        if flip.healthy && !service.policy.serving(b) {
            match service.policy.hold_remaining(b, now) {
                Some(left) => {
                    info!(service = %service.name, backend = %backend_name, failback_in = ?left, "healthy again; failback held for the failback delay")
                }
                None if service.policy.hold(b).is_some() => {
                    info!(service = %service.name, backend = %backend_name, "healthy again; waiting for an operator failback (failover failback)")
                }
                None => {}
            }
        }
        self.refresh_service_telemetry(s);
        true
    }
}
