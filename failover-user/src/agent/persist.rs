//! The agent's own state of every backend, kept in `FO_ADMIN` next to the
//! maps it explains: admin state (maintenance, operator drain and its
//! deadline), health, failback holds and the switchover target. A
//! restarted agent (after SIGTERM, a crash or SIGKILL) resumes exactly what
//! its predecessor decided; records of an earlier owner of a backend id are
//! told apart by the slot's generation and ignored.
//!
//! Deadlines are stored on CLOCK_MONOTONIC, which `Instant` uses on Linux:
//! pins do not survive a reboot, and neither need the deadlines.

use std::time::{Duration, Instant};

use failover_common::{
    ADMIN_F_HEALTHY, ADMIN_F_HOLD_OPERATOR, ADMIN_F_HOLD_TIMED, ADMIN_F_SERVING,
    ADMIN_F_SWITCHOVER_TARGET, ADMIN_F_VALID, AdminRecord, admin_kind,
};
use tracing::warn;

use super::{Agent, runtime::ServiceRuntime};
use crate::{
    Dataplane,
    decide::policy::{Admin, Hold, MemberState},
};

/// Converts between `Instant` and CLOCK_MONOTONIC nanoseconds.
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    monotonic_ns: u64,
}

impl Clock {
    fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Self {
            instant: Instant::now(),
            monotonic_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }

    fn to_ns(self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(ahead) => self.monotonic_ns.saturating_add(ahead.as_nanos() as u64),
            None => self
                .monotonic_ns
                .saturating_sub((self.instant - at).as_nanos() as u64),
        }
        .max(1)
    }

    fn to_instant(self, ns: u64) -> Instant {
        if ns >= self.monotonic_ns {
            self.instant + Duration::from_nanos(ns - self.monotonic_ns)
        } else {
            self.instant
                .checked_sub(Duration::from_nanos(self.monotonic_ns - ns))
                .unwrap_or(self.instant)
        }
    }
}

fn record_of(state: MemberState, target: bool, generation: u32, clock: Clock) -> AdminRecord {
    let mut record = AdminRecord {
        generation,
        flags: ADMIN_F_VALID,
        ..AdminRecord::default()
    };
    if state.healthy {
        record.flags |= ADMIN_F_HEALTHY;
    }
    if state.serving {
        record.flags |= ADMIN_F_SERVING;
    }
    if target {
        record.flags |= ADMIN_F_SWITCHOVER_TARGET;
    }
    match state.hold {
        Some(Hold::Operator) => record.flags |= ADMIN_F_HOLD_OPERATOR,
        Some(Hold::Until(at)) => {
            record.flags |= ADMIN_F_HOLD_TIMED;
            record.hold_until_ns = clock.to_ns(at);
        }
        None => {}
    }
    match state.admin {
        Admin::Normal => {}
        Admin::Maintenance => record.admin = admin_kind::MAINTENANCE,
        Admin::Drained { until } => {
            record.admin = admin_kind::DRAINED;
            record.drain_until_ns = until.map_or(0, |at| clock.to_ns(at));
        }
    }
    record
}

/// The saved state in `record`, if it is valid for a slot of `generation`,
/// and whether the backend was its service's switchover target.
fn state_of(record: &AdminRecord, generation: u32, clock: Clock) -> Option<(MemberState, bool)> {
    if record.flags & ADMIN_F_VALID == 0 || record.generation != generation {
        return None;
    }
    let flag = |bit| record.flags & bit != 0;
    let hold = if flag(ADMIN_F_HOLD_OPERATOR) {
        Some(Hold::Operator)
    } else if flag(ADMIN_F_HOLD_TIMED) {
        Some(Hold::Until(clock.to_instant(record.hold_until_ns)))
    } else {
        None
    };
    let admin = match record.admin {
        admin_kind::MAINTENANCE => Admin::Maintenance,
        admin_kind::DRAINED => Admin::Drained {
            until: (record.drain_until_ns != 0).then(|| clock.to_instant(record.drain_until_ns)),
        },
        _ => Admin::Normal,
    };
    Some((
        MemberState {
            healthy: flag(ADMIN_F_HEALTHY),
            serving: flag(ADMIN_F_SERVING),
            hold,
            admin,
        },
        flag(ADMIN_F_SWITCHOVER_TARGET),
    ))
}

/// The states an earlier agent saved for these backend ids (`None` where
/// there is no valid record), and the switchover target among them.
pub(super) fn saved_states(
    dataplane: &Dataplane,
    ids: &[u32],
) -> (Vec<Option<MemberState>>, Option<usize>) {
    let clock = Clock::now();
    let mut target = None;
    let states = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let generation = dataplane.backend_generation(*id)?;
            let record = dataplane.admin_records().get(*id).ok()?;
            let (state, is_target) = state_of(&record, generation, clock)?;
            if is_target {
                target = Some(i);
            }
            Some(state)
        })
        .collect();
    (states, target)
}

impl ServiceRuntime {
    /// The records this service's backends should have now.
    fn records(&self, dataplane: &Dataplane, clock: Clock) -> Vec<(u32, AdminRecord)> {
        let target = self.policy.switched_to();
        self.backends
            .iter()
            .enumerate()
            .filter_map(|(i, backend)| {
                let generation = dataplane.backend_generation(backend.id)?;
                let state = self.policy.member_state(i);
                Some((
                    backend.id,
                    record_of(state, target == Some(i), generation, clock),
                ))
            })
            .collect()
    }
}

impl Agent {
    /// Saves the service's state where its successor will find it. Only
    /// records that changed are written.
    pub(super) fn persist(&mut self, s: usize) {
        let clock = Clock::now();
        let records = self.services[s].records(&self.dataplane, clock);
        for (id, record) in records {
            if self.services[s].saved.get(&id) == Some(&record) {
                continue;
            }
            match self.dataplane.admin_records_mut().set(id, &record) {
                Ok(()) => {
                    self.services[s].saved.insert(id, record);
                }
                Err(err) => {
                    warn!(service = %self.services[s].name, backend_id = id, cause = %crate::util::chain(&err), "saving the backend's state for the next agent failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_survives_a_round_trip() {
        let clock = Clock::now();
        let soon = clock.instant + Duration::from_millis(1500);
        let states = [
            MemberState {
                healthy: true,
                serving: true,
                hold: None,
                admin: Admin::Normal,
            },
            MemberState {
                healthy: true,
                serving: false,
                hold: Some(Hold::Until(soon)),
                admin: Admin::Normal,
            },
            MemberState {
                healthy: true,
                serving: false,
                hold: Some(Hold::Operator),
                admin: Admin::Maintenance,
            },
            MemberState {
                healthy: false,
                serving: false,
                hold: None,
                admin: Admin::Drained { until: Some(soon) },
            },
            MemberState {
                healthy: true,
                serving: true,
                hold: None,
                admin: Admin::Drained { until: None },
            },
        ];
        for (i, state) in states.into_iter().enumerate() {
            let target = i == 1;
            let record = record_of(state, target, 7, clock);
            // Another agent, later: a new clock reading.
            let later = Clock::now();
            let (back, was_target) = state_of(&record, 7, later).expect("valid");
            assert_eq!(was_target, target);
            assert_eq!(back.healthy, state.healthy);
            assert_eq!(back.serving, state.serving);
            let close = |a: Instant, b: Instant| a.max(b) - a.min(b) < Duration::from_millis(1);
            match (back.hold, state.hold) {
                (Some(Hold::Until(a)), Some(Hold::Until(b))) => assert!(close(a, b)),
                (a, b) => assert_eq!(a, b),
            }
            match (back.admin, state.admin) {
                (Admin::Drained { until: Some(a) }, Admin::Drained { until: Some(b) }) => {
                    assert!(close(a, b))
                }
                (a, b) => assert_eq!(a, b),
            }
            // A record of an earlier owner of the id is not taken.
            assert!(state_of(&record, 8, later).is_none());
        }
        assert!(state_of(&AdminRecord::default(), 0, clock).is_none());
    }
}
