//! Passive detection in the agent: the data path's evidence of each
//! backend of a service with `[services.passive]`, sampled every
//! [`SAMPLE_EVERY`]; a backend the evidence condemns (`decide::passive`)
//! is ejected through the same path as a probe's flip, within the
//! service's cap, and returns through `rise` passing probes.

use std::time::{Duration, Instant};

use tracing::warn;

use super::Agent;

/// How often the evidence counters are read (one syscall per backend).
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(10);

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
                let ejected = service.backends.iter().filter(|b| b.ejected).count();
                let name = service.name.clone();
                let backend = &mut service.backends[b];
                let Some(why) = backend.watch.observe(now, evidence, &settings) else {
                    continue;
                };
                // Judged once per window: the next ejection needs new evidence.
                backend.watch.clear();
                if !backend.health.healthy() {
                    continue;
                }
                if ejected >= cap {
                    warn!(service = %name, backend = %backend.name, evidence = %why, ejected, cap, "not ejected: the service's cap of backends ejected on evidence is reached (max_ejected_percent)");
                    continue;
                }
                let Some(flip) = backend.health.eject(now, why) else {
                    continue;
                };
                backend.ejected = true;
                moved |= self.on_flip(s, b, flip);
            }
        }
        moved
    }
}
