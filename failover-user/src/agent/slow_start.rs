//! Slow start (`slow_start = "30s"`): a backend that starts taking new
//! flows again — failback, recovery, undrain, end of maintenance or of a
//! suppression — sees a share of its weight that grows linearly over the
//! service's `slow_start`, in [`STAGES`] staged Maglev tables. Established
//! flows never move (their entries name their backend); in tiers mode,
//! while the whole tier taking new flows ramps, the next tier with up
//! backends keeps the rest (`decide::select`). N+1 members take their
//! slots back at once (a ramp would move other members' slots).

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Agent;
use crate::{
    decide::policy::Change,
    model::{BackendState, RAMP_FULL},
};

/// Table stages of a ramp: a new table every `slow_start / STAGES`.
const STAGES: u32 = 30;

/// The ramp (per mille) `elapsed` into a slow start of `duration`: the
/// linear ramp's value at the middle of the stage it is in (so each
/// stage's share averages the ramp over it), full from `duration` on.
fn ramp_at(elapsed: Duration, duration: Duration) -> u16 {
    if elapsed >= duration {
        return RAMP_FULL;
    }
    let stage = (elapsed.as_secs_f64() / duration.as_secs_f64() * f64::from(STAGES)).floor();
    let middle = (stage + 0.5) / f64::from(STAGES);
    ((middle * f64::from(RAMP_FULL)).round() as u16).clamp(1, RAMP_FULL)
}

/// When the stage after the one `elapsed` is in begins.
fn next_stage(since: Instant, elapsed: Duration, duration: Duration) -> Instant {
    let stage = duration / STAGES;
    let done = (elapsed.as_nanos() / stage.as_nanos().max(1)) as u32 + 1;
    since + stage * done
}

impl Agent {
    /// Before `changes` are written: backends of service `s` that start
    /// taking new flows again begin their slow start at its first stage.
    pub(super) fn start_ramps(&mut self, s: usize, changes: &[Change], now: Instant) {
        let service = &mut self.services[s];
        let Some(duration) = service.plan.slow_start else {
            return;
        };
        if service.plan.mode == crate::decide::select::Mode::NPlusOne {
            return;
        }
        for change in changes.iter().filter(|c| c.state == BackendState::Up) {
            let backend = &mut service.backends[change.backend];
            let was_up = self
                .dataplane
                .service(service.id)
                .and_then(|entry| entry.backends.get(&backend.id))
                .is_some_and(|spec| spec.state == BackendState::Up);
            if was_up {
                continue;
            }
            backend.ramp_since = Some(now);
            let ramp = ramp_at(Duration::ZERO, duration);
            if let Err(err) = self.dataplane.set_ramp(backend.id, ramp) {
                warn!(service = %service.name, backend = %backend.name, cause = %crate::util::chain(&err), "slow start not applied");
                backend.ramp_since = None;
                continue;
            }
            info!(service = %service.name, backend = %backend.name, over = ?duration, "slow start: its share of new flows ramps up");
        }
    }

    /// Moves every ramp to its stage at `now`, republishing the services
    /// whose tables change; ends the ramps that reached full weight.
    pub(super) fn advance_ramps(&mut self, now: Instant) {
        for s in 0..self.services.len() {
            let Some(duration) = self.services[s].plan.slow_start else {
                continue;
            };
            let service_id = self.services[s].id;
            let mut changed = false;
            for b in 0..self.services[s].backends.len() {
                let service = &mut self.services[s];
                let backend = &mut service.backends[b];
                let Some(since) = backend.ramp_since else {
                    continue;
                };
                let ramp = ramp_at(now.saturating_duration_since(since), duration);
                if ramp >= RAMP_FULL {
                    backend.ramp_since = None;
                    info!(service = %service.name, backend = %backend.name, "slow start done: full weight");
                }
                let current = self
                    .dataplane
                    .service(service_id)
                    .and_then(|entry| entry.backends.get(&backend.id))
                    .map(|spec| spec.ramp);
                if current != Some(ramp) && self.dataplane.set_ramp(backend.id, ramp).is_ok() {
                    changed = true;
                }
            }
            if changed {
                if let Err(err) = self.dataplane.republish(service_id) {
                    warn!(service = %self.services[s].name, cause = %crate::util::chain(&err), "slow start stage not written; the service will be written again until the maps agree");
                    self.mark_dirty(s);
                }
                self.persist(s);
                self.refresh_service_telemetry(s);
            }
        }
    }

    /// Puts every backend of the services without a slow start back at
    /// full weight where a ramp was left in their records (a reload that
    /// removed the setting; the dataplane keeps a kept backend's ramp).
    pub(super) fn end_orphaned_ramps(&mut self) {
        for s in 0..self.services.len() {
            if self.services[s].plan.slow_start.is_none() {
                self.end_ramps(s);
            }
        }
    }

    fn end_ramps(&mut self, s: usize) {
        let service_id = self.services[s].id;
        let ramping: Vec<u32> = self
            .dataplane
            .service(service_id)
            .map(|entry| {
                entry
                    .backends
                    .iter()
                    .filter(|(_, spec)| spec.ramp != RAMP_FULL)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        if ramping.is_empty() {
            return;
        }
        for backend in &mut self.services[s].backends {
            backend.ramp_since = None;
        }
        for id in ramping {
            let _ = self.dataplane.set_ramp(id, RAMP_FULL);
        }
        if self.dataplane.republish(service_id).is_err() {
            self.mark_dirty(s);
        }
        self.persist(s);
        self.refresh_service_telemetry(s);
    }

    /// When the next ramp stage begins, if any backend ramps.
    pub(super) fn next_ramp_stage(&self) -> Option<Instant> {
        let now = Instant::now();
        self.services
            .iter()
            .filter_map(|s| Some((s, s.plan.slow_start?)))
            .flat_map(|(s, duration)| {
                s.backends.iter().filter_map(move |b| {
                    let since = b.ramp_since?;
                    Some(next_stage(
                        since,
                        now.saturating_duration_since(since),
                        duration,
                    ))
                })
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_grows_linearly_in_stages_to_full() {
        let duration = Duration::from_secs(30);
        assert_eq!(ramp_at(Duration::ZERO, duration), 17);
        assert_eq!(ramp_at(Duration::from_millis(999), duration), 17);
        assert_eq!(ramp_at(Duration::from_secs(1), duration), 50);
        assert_eq!(ramp_at(Duration::from_secs(15), duration), 517);
        assert_eq!(ramp_at(Duration::from_millis(29_999), duration), 983);
        assert_eq!(ramp_at(duration, duration), RAMP_FULL);
        assert_eq!(ramp_at(Duration::from_secs(90), duration), RAMP_FULL);
        let since = Instant::now();
        assert_eq!(
            next_stage(since, Duration::from_millis(1500), duration),
            since + Duration::from_secs(2)
        );
    }
}
