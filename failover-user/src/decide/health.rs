//! Health of one backend from its probe results: the state flips only after
//! `rise` consecutive successes or `fall` consecutive failures, so a single
//! lost probe never moves traffic. Each flip carries its evidence.

use std::{collections::VecDeque, time::Instant};

pub use crate::probe::ProbeOutcome;

/// A flip of the health state, with the results that caused it.
#[derive(Clone, Debug)]
pub struct Flip {
    pub healthy: bool,
    /// The last results, oldest first (at least the `rise`/`fall` that decided).
    pub evidence: Vec<ProbeOutcome>,
    /// For a flip to unhealthy: the first failed probe of the decisive run.
    pub first_failure_at: Option<Instant>,
    /// An ejection on the data path's evidence (`decide::passive`): what
    /// it saw.
    pub passive: Option<String>,
}

/// How many results are kept as evidence.
const EVIDENCE: usize = 8;

#[derive(Clone, Debug)]
pub struct Health {
    rise: u32,
    fall: u32,
    healthy: bool,
    /// Consecutive results disagreeing with `healthy`.
    streak: u32,
    streak_started: Option<Instant>,
    recent: VecDeque<ProbeOutcome>,
}

impl Health {
    /// Backends start healthy (as a fresh HAProxy server does) unless the
    /// agent adopted a known state from the pinned maps.
    pub fn new(rise: u32, fall: u32, healthy: bool) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            healthy,
            streak: 0,
            streak_started: None,
            recent: VecDeque::with_capacity(EVIDENCE),
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    pub fn recent(&self) -> impl Iterator<Item = &ProbeOutcome> {
        self.recent.iter()
    }

    /// Records a result; returns the flip if this result completed one.
    pub fn record(&mut self, outcome: ProbeOutcome) -> Option<Flip> {
        if self.recent.len() == EVIDENCE {
            self.recent.pop_front();
        }
        let ok = outcome.ok;
        let at = outcome.at;
        self.recent.push_back(outcome);
        if ok == self.healthy {
            self.streak = 0;
            self.streak_started = None;
            return None;
        }
        if self.streak == 0 {
            self.streak_started = Some(at);
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak < needed {
            return None;
        }
        self.healthy = ok;
        self.streak = 0;
        let started = self.streak_started.take();
        Some(Flip {
            healthy: ok,
            evidence: self.recent.iter().cloned().collect(),
            first_failure_at: if ok { None } else { started },
            passive: None,
        })
    }

    /// Undoes a flip to unhealthy that the data path contradicts
    /// (`decide::second_opinion`): healthy, and the next failure starts a
    /// new run.
    pub fn keep_healthy(&mut self) {
        self.healthy = true;
        self.streak = 0;
        self.streak_started = None;
    }

    /// Marks a healthy backend unhealthy on the data path's evidence
    /// (`why`), at `now`; it comes back through `rise` passing probes.
    pub fn eject(&mut self, now: Instant, why: String) -> Option<Flip> {
        if !self.healthy {
            return None;
        }
        self.healthy = false;
        self.streak = 0;
        self.streak_started = None;
        Some(Flip {
            healthy: false,
            evidence: self.recent.iter().cloned().collect(),
            first_failure_at: Some(now),
            passive: Some(why),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn outcome(ok: bool, at: Instant) -> ProbeOutcome {
        ProbeOutcome {
            ok,
            latency: Duration::from_millis(1),
            error: (!ok).then_some(crate::probe::ProbeError::NoEchoReply),
            at,
        }
    }

    #[test]
    fn flips_down_only_after_fall_consecutive_failures() {
        let start = Instant::now();
        let mut health = Health::new(2, 3, true);
        assert!(health.record(outcome(false, start)).is_none());
        assert!(
            health
                .record(outcome(false, start + Duration::from_millis(10)))
                .is_none()
        );
        let flip = health
            .record(outcome(false, start + Duration::from_millis(20)))
            .unwrap();
        assert!(!flip.healthy);
        assert_eq!(flip.first_failure_at, Some(start));
        assert_eq!(flip.evidence.len(), 3);
        assert!(!health.healthy());
    }

    #[test]
    fn a_success_in_between_resets_the_streak() {
        let now = Instant::now();
        let mut health = Health::new(2, 3, true);
        for ok in [false, false, true, false, false] {
            assert!(
                health.record(outcome(ok, now)).is_none(),
                "no flip expected"
            );
        }
        assert!(health.healthy());
        assert!(health.record(outcome(false, now)).is_some());
    }

    #[test]
    fn flapping_faster_than_the_thresholds_never_flips() {
        let now = Instant::now();
        let mut health = Health::new(3, 3, true);
        for i in 0..100 {
            // Two failures, one success, repeated: never three in a row.
            let ok = i % 3 == 2;
            assert!(health.record(outcome(ok, now)).is_none());
        }
    }

    #[test]
    fn rises_after_rise_successes() {
        let now = Instant::now();
        let mut health = Health::new(2, 1, false);
        assert!(health.record(outcome(true, now)).is_none());
        let flip = health.record(outcome(true, now)).unwrap();
        assert!(flip.healthy);
        assert_eq!(flip.first_failure_at, None);
    }

    #[test]
    fn evidence_is_bounded() {
        let now = Instant::now();
        let mut health = Health::new(1, 100, true);
        for _ in 0..50 {
            health.record(outcome(false, now));
        }
        assert_eq!(health.recent().count(), EVIDENCE);
    }
}
