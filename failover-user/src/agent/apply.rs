//! Decisions reach the maps: timers (holds, drain deadlines, suppressions), changes
//! written backend by backend, a failed write marked for resync.

use std::time::Instant;

use tracing::warn;

use super::{Agent, runtime::Cause};

impl Agent {
    /// Brings the maps in line with the policies just built or resumed (a
    /// deadline that passed while no agent ran, a saved state the maps do
    /// not show yet) and saves every service's state.
    pub(super) fn settle(&mut self) {
        let now = Instant::now();
        for s in 0..self.services.len() {
            let before = self.services[s].active_names(&self.dataplane);
            let changes = self.services[s].policy.on_tick(now);
            self.apply(s, before, changes, Cause::Timer);
        }
        // Slow starts an earlier agent began go on from their stage; those
        // a reload removed end.
        self.advance_ramps(now);
        self.end_orphaned_ramps();
    }

    pub(super) fn on_tick(&mut self) {
        self.resync();
        let now = Instant::now();
        self.advance_ramps(now);
        for s in 0..self.services.len() {
            // Only a due hold or drain deadline gives a service work here.
            if self.services[s]
                .policy
                .next_deadline()
                .is_none_or(|at| at > now)
            {
                continue;
            }
            let before = self.services[s].active_names(&self.dataplane);
            let suppressed = self.suppressed(s);
            let changes = self.services[s].policy.on_tick(now);
            self.report_reused(s, &suppressed);
            self.apply(s, before, changes, Cause::Timer);
            self.refresh_service_telemetry(s);
        }
    }

    /// Writes policy changes to the data path, then logs and publishes what
    /// changed for new flows (`before`: who took them before the decision).
    pub(super) fn apply(
        &mut self,
        s: usize,
        before: Vec<String>,
        changes: Vec<crate::decide::policy::Change>,
        cause: Cause,
    ) {
        let decided_to_map = self.write_changes(s, &changes, cause);
        self.report_changes(s, before, &changes, cause, decided_to_map);
    }

    /// Writes policy changes to the data path. Returns, for a failure, the
    /// time from the decisive probe result to the maps written: what a
    /// decision costs us.
    pub(super) fn write_changes(
        &mut self,
        s: usize,
        changes: &[crate::decide::policy::Change],
        cause: Cause,
    ) -> Option<std::time::Duration> {
        self.start_ramps(s, changes, Instant::now());
        let service = &self.services[s];
        let mut failed = false;
        for change in changes {
            let backend = &service.backends[change.backend];
            if let Err(err) = self.dataplane.set_backend_state(backend.id, change.state) {
                warn!(service = %service.name, backend = %backend.name, cause = %crate::util::chain(&err), "map update failed; the service will be written again until the maps agree");
                failed = true;
            }
        }
        if failed {
            self.mark_dirty(s);
        }
        self.persist(s);
        match cause {
            Cause::Failed {
                decided: Some(at), ..
            } if !changes.is_empty() => Some(at.elapsed()),
            _ => None,
        }
    }
}
