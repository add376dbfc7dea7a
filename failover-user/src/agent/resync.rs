//! Map writes that failed. The policy has decided; the maps must follow.
//! A service whose write failed is marked out of sync and written again
//! whole from its policy, with backoff, until a write succeeds; failures
//! are counted (`failover_map_write_failures_total`) and the services
//! still out of sync are a gauge.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::Agent;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Services (by name, which survives reloads) whose maps are out of sync.
#[derive(Debug)]
pub(super) struct Resync {
    dirty: BTreeSet<String>,
    next_at: Option<Instant>,
    backoff: Duration,
}

impl Default for Resync {
    fn default() -> Self {
        Self {
            dirty: BTreeSet::new(),
            next_at: None,
            backoff: FIRST_RETRY,
        }
    }
}

impl Resync {
    pub fn due(&self) -> Option<Instant> {
        self.next_at
    }
}

impl Agent {
    /// A map write of service `s` failed.
    pub(super) fn mark_dirty(&mut self, s: usize) {
        let name = self.services[s].name.clone();
        self.totals.map_write_failures_total += 1;
        if self.resync.dirty.insert(name) && self.resync.next_at.is_none() {
            self.resync.next_at = Some(Instant::now() + self.resync.backoff);
        }
        self.totals.services_out_of_sync = self.resync.dirty.len() as u64;
    }

    /// Every service may be out of sync (a restore failed).
    pub(super) fn mark_all_dirty(&mut self) {
        for s in 0..self.services.len() {
            self.mark_dirty(s);
        }
    }

    /// Writes every out-of-sync service again from its policy.
    pub(super) fn resync(&mut self) {
        let now = Instant::now();
        if self.resync.next_at.is_none_or(|at| at > now) {
            return;
        }
        let dirty = std::mem::take(&mut self.resync.dirty);
        for name in dirty {
            let Some(s) = self.services.iter().position(|svc| svc.name == name) else {
                continue; // removed by a reload since
            };
            let service = &self.services[s];
            let states = service.policy.states(now);
            let by_id = service
                .backends
                .iter()
                .zip(states)
                .map(|(b, state)| (b.id, state))
                .collect();
            match self.dataplane.resync_service(service.id, &by_id) {
                Ok(()) => {
                    info!(service = %name, "maps written again; they carry the agent's decisions")
                }
                Err(err) => {
                    warn!(service = %name, cause = %crate::util::chain(&err), "writing the maps again failed; retrying");
                    self.totals.map_write_failures_total += 1;
                    self.resync.dirty.insert(name);
                }
            }
        }
        if self.resync.dirty.is_empty() {
            self.resync.next_at = None;
            self.resync.backoff = FIRST_RETRY;
        } else {
            self.resync.backoff = (self.resync.backoff * 2).min(LONGEST_RETRY);
            self.resync.next_at = Some(now + self.resync.backoff);
        }
        self.totals.services_out_of_sync = self.resync.dirty.len() as u64;
        self.refresh_telemetry();
    }
}
