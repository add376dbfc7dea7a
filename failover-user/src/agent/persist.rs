//! The agent's own state of every backend, kept in `FO_ADMIN` next to the
//! maps it explains: admin state (maintenance, operator drain and its
//! deadline), health, failback holds and the switchover target; and in
//! `FO_TIMERS`, its flap-damping penalty and suppression. A
//! restarted agent (after SIGTERM, a crash or SIGKILL) resumes exactly what
//! its predecessor decided; records of an earlier owner of a backend id are
//! told apart by the slot's generation and ignored.
//!
//! Deadlines are stored on CLOCK_MONOTONIC, which `Instant` uses on Linux:
//! pins do not survive a reboot, and neither need the deadlines.

use std::time::{Duration, Instant};

use failover_common::{
    ADMIN_F_HEALTHY, ADMIN_F_HOLD_OPERATOR, ADMIN_F_HOLD_TIMED, ADMIN_F_SERVING,
    ADMIN_F_SWITCHOVER_TARGET, ADMIN_F_VALID, AdminRecord, TimersRecord, admin_kind,
};
use tracing::warn;

use super::{Agent, runtime::ServiceRuntime};
use crate::{
    Dataplane,
    decide::{
        damping::Damping,
        policy::{Admin, Hold, MemberState},
    },
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

/// A backend's timers as an earlier agent left them.
#[derive(Clone, Debug, Default)]
pub(super) struct SavedTimers {
    pub damping: Damping,
    pub suppressed_until: Option<Instant>,
    pub slow_start_since: Option<Instant>,
}

/// A backend's timers as a record for a slot of `generation`.
fn timers_record(timers: &SavedTimers, generation: u32, clock: Clock) -> TimersRecord {
    let (penalty, penalty_at_ns) = timers
        .damping
        .saved()
        .map_or((0.0, 0), |(penalty, at)| (penalty, clock.to_ns(at)));
    let ns = |at: Option<Instant>| at.map_or(0, |at| clock.to_ns(at));
    TimersRecord {
        generation,
        penalty: penalty.round().clamp(0.0, f64::from(u32::MAX)) as u32,
        penalty_at_ns,
        suppressed_until_ns: ns(timers.suppressed_until),
        slow_start_since_ns: ns(timers.slow_start_since),
    }
}

/// The timers saved in `record` for a slot of `generation`.
fn timers_of(record: &TimersRecord, generation: u32, clock: Clock) -> Option<SavedTimers> {
    if record.generation != generation || generation == 0 {
        return None;
    }
    let at = |ns: u64| (ns != 0).then(|| clock.to_instant(ns));
    Some(SavedTimers {
        damping: at(record.penalty_at_ns)
            .map(|at| Damping::resumed(f64::from(record.penalty), at))
            .unwrap_or_default(),
        suppressed_until: at(record.suppressed_until_ns),
        slow_start_since: at(record.slow_start_since_ns),
    })
}

/// The timers an earlier agent saved for these backend ids.
pub(super) fn saved_timers(dataplane: &Dataplane, ids: &[u32]) -> Vec<Option<SavedTimers>> {
    let clock = Clock::now();
    ids.iter()
        .map(|id| {
            let generation = dataplane.backend_generation(*id)?;
            let record = dataplane.admin_records().timers(*id).ok()?;
            timers_of(&record, generation, clock)
        })
        .collect()
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
    fn records(
        &self,
        dataplane: &Dataplane,
        clock: Clock,
    ) -> Vec<(u32, AdminRecord, TimersRecord)> {
        let target = self.policy.switched_to();
        self.backends
            .iter()
            .enumerate()
            .filter_map(|(i, backend)| {
                let generation = dataplane.backend_generation(backend.id)?;
                let state = self.policy.member_state(i);
                let timers = SavedTimers {
                    damping: backend.damping.clone(),
                    suppressed_until: self.policy.suppressed_until(i),
                    slow_start_since: backend.ramp_since,
                };
                Some((
                    backend.id,
                    record_of(state, target == Some(i), generation, clock),
                    timers_record(&timers, generation, clock),
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
        for (id, record, damping) in records {
            let saved = self.services[s].saved.get(&id);
            if saved == Some(&(record, damping)) {
                continue;
            }
            let records = self.dataplane.admin_records_mut();
            match records
                .set(id, &record)
                .and_then(|()| records.set_timers(id, &damping))
            {
                Ok(()) => {
                    self.services[s].saved.insert(id, (record, damping));
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

    #[test]
    fn timers_survive_a_round_trip() {
        let clock = Clock::now();
        let settings = crate::decide::damping::DampingSettings::default();
        let mut damping = Damping::default();
        let until = damping.failed(clock.instant, &settings, true);
        let since = clock.instant - Duration::from_secs(3);
        let timers = SavedTimers {
            damping: damping.clone(),
            suppressed_until: until,
            slow_start_since: Some(since),
        };
        let record = timers_record(&timers, 3, clock);
        let later = Clock::now();
        let back = timers_of(&record, 3, later).expect("valid");
        let now = Instant::now();
        let penalty = |d: &Damping| d.penalty(now, &settings);
        assert!((penalty(&back.damping) - penalty(&damping)).abs() < 1.0);
        let close = |a: Instant, b: Instant| a.max(b) - a.min(b) < Duration::from_millis(1);
        assert!(close(back.suppressed_until.unwrap(), until.unwrap()));
        assert!(close(back.slow_start_since.unwrap(), since));
        // Another owner of the id: nothing; nothing saved: nothing set.
        assert!(timers_of(&record, 4, later).is_none());
        let none = timers_of(&timers_record(&SavedTimers::default(), 3, clock), 3, later).unwrap();
        assert!(none.damping.saved().is_none());
        assert!(none.suppressed_until.is_none() && none.slow_start_since.is_none());
    }
}
