//! Passive detection in the agent: the data path's evidence of each
//! backend of a service with `[services.passive]`, sampled every
//! [`SAMPLE_EVERY`]; a backend the evidence condemns (`decide::passive`)
//! is ejected through the same path as a probe's flip, within the
//! service's cap, never its last healthy backend, and returns through
//! `rise` passing probes.

use std::time::{Duration, Instant};

use tracing::warn;

use super::Agent;

/// How often the evidence counters are read (one syscall per backend).
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// A refused ejection is logged at most this often per backend.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

impl Agent {
    /// Whether any service watches the data path's evidence.
    pub(super) fn has_passive(&self) -> bool {
        self.services.iter().any(|s| s.plan.passive.is_some())
    }

    /// Samples every watched backend's evidence; ejects those it condemns.
    /// Returns whether a backend was ejected.
    pub(super) fn on_passive_tick(&mut self) -> bool {
        let now = Instant::now();
        let mut moved = false;
        for s in 0..self.services.len() {
            let Some(settings) = self.services[s].plan.passive else {
                continue;
            };
            let cap = settings.max_ejected(self.services[s].backends.len());
            for b in 0..self.services[s].backends.len() {
                let id = self.services[s].backends[b].id;
                let Ok(evidence) = self.dataplane.counters().evidence(id) else {
                    continue;
                };
                let service = &mut self.services[s];
                // Every unhealthy backend counts against the cap, whatever
                // made it so (a restart or reload keeps health, not why).
                let unhealthy = service
                    .backends
                    .iter()
                    .filter(|b| !b.health.healthy())
                    .count();
                let healthy = service.backends.len() - unhealthy;
                let backend = &mut service.backends[b];
                let Some(why) = backend.watch.observe(now, evidence, &settings) else {
                    continue;
                };
                // Judged once per window: the next ejection needs new evidence.
                backend.watch.clear();
                if !backend.health.healthy() {
                    continue;
                }
                if unhealthy >= cap || healthy <= 1 {
                    if backend
                        .passive_refused_at
                        .is_none_or(|at| now.duration_since(at) >= REFUSED_LOG_EVERY)
                    {
                        backend.passive_refused_at = Some(now);
                        let reason = if healthy <= 1 {
                            "it is the service's last healthy backend"
                        } else {
                            "the service's cap of unhealthy backends is reached (max_ejected_percent)"
                        };
                        warn!(service = %service.name, backend = %backend.name, evidence = %why, unhealthy, cap, "not ejected: {reason}");
                    }
                    continue;
                }
                let Some(flip) = backend.health.eject(now, why) else {
                    continue;
                };
                moved |= self.on_flip(s, b, flip);
            }
        }
        moved
    }
}
