//! Passive detection: a backend ejected on what the data path saw of its
//! handshakes (`failover_common::Evidence`), before a probe notices. Pure:
//! the agent feeds samples of the pinned counters, this says whether and
//! why to eject. RSTs answering SYNs exactly and ICMP unreachable from a
//! backend's side are a dead service's first answer; an application
//! closing established connections never counts (the data path sees to
//! that).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use failover_common::Evidence;

/// A service's `[services.passive]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassiveSettings {
    /// How far back the counts below look.
    pub window: Duration,
    /// RSTs answering SYNs within the window that eject the backend.
    pub resets: u64,
    /// ICMP unreachable from the backend's side within the window that
    /// eject it.
    pub unreachable: u64,
    /// At most this share of the service's backends ejected by evidence at
    /// once (at least one).
    pub max_ejected_percent: u32,
}

impl Default for PassiveSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(1),
            resets: 3,
            unreachable: 3,
            max_ejected_percent: 50,
        }
    }
}

impl PassiveSettings {
    /// How many of `backends` may be ejected by evidence at once.
    pub fn max_ejected(&self, backends: usize) -> usize {
        (backends * self.max_ejected_percent as usize / 100).max(1)
    }
}

/// A backend's recent evidence samples.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    samples: VecDeque<(Instant, Evidence)>,
}

impl Watch {
    /// Takes a sample of the backend's counters at `now`; returns why to
    /// eject it if the window holds enough evidence.
    pub fn observe(
        &mut self,
        now: Instant,
        evidence: Evidence,
        settings: &PassiveSettings,
    ) -> Option<String> {
        self.samples.push_back((now, evidence));
        // Keep the newest sample at or before the window's start as the base.
        while self
            .samples
            .get(1)
            .is_some_and(|(at, _)| now.duration_since(*at) >= settings.window)
        {
            self.samples.pop_front();
        }
        let (_, base) = self.samples.front()?;
        let resets = evidence.syn_resets.saturating_sub(base.syn_resets);
        let syns = evidence.syns.saturating_sub(base.syns);
        let unreachable = evidence.unreachable.saturating_sub(base.unreachable);
        let within = settings.window;
        // Most of the SYNs refused, not a few among many answered: a
        // backend that takes most connections is not dead.
        if resets >= settings.resets && resets * 2 >= syns {
            return Some(format!(
                "{resets} RSTs answering {syns} SYNs within {within:?} (threshold {})",
                settings.resets
            ));
        }
        if unreachable >= settings.unreachable {
            return Some(format!(
                "{unreachable} ICMP unreachable from its side within {within:?} (threshold {})",
                settings.unreachable
            ));
        }
        None
    }

    /// Forgets the samples (after an ejection: the next one starts afresh).
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resets(n: u64) -> Evidence {
        Evidence {
            syns: n,
            syn_resets: n,
            ..Evidence::default()
        }
    }

    #[test]
    fn a_few_resets_among_many_answered_syns_eject_nothing() {
        let settings = PassiveSettings::default();
        let mut watch = Watch::default();
        let t0 = Instant::now();
        watch.observe(t0, Evidence::default(), &settings);
        let busy = Evidence {
            syns: 100,
            syn_acks: 95,
            syn_resets: 5,
            ..Evidence::default()
        };
        assert_eq!(
            watch.observe(t0 + Duration::from_millis(50), busy, &settings),
            None
        );
    }

    #[test]
    fn ejects_once_the_window_holds_the_threshold() {
        let settings = PassiveSettings::default();
        let mut watch = Watch::default();
        let t0 = Instant::now();
        assert_eq!(watch.observe(t0, resets(10), &settings), None);
        assert_eq!(
            watch.observe(t0 + Duration::from_millis(20), resets(12), &settings),
            None
        );
        let why = watch
            .observe(t0 + Duration::from_millis(40), resets(13), &settings)
            .expect("three resets within the window");
        assert!(why.starts_with("3 RSTs answering 3 SYNs"), "{why}");
    }

    #[test]
    fn evidence_older_than_the_window_does_not_count() {
        let settings = PassiveSettings::default();
        let mut watch = Watch::default();
        let t0 = Instant::now();
        watch.observe(t0, resets(0), &settings);
        watch.observe(t0 + Duration::from_millis(100), resets(2), &settings);
        // Two more, 1.5 s later: only those fall in the window.
        watch.observe(t0 + Duration::from_millis(1500), resets(2), &settings);
        assert_eq!(
            watch.observe(t0 + Duration::from_millis(1600), resets(4), &settings),
            None
        );
        assert!(
            watch
                .observe(t0 + Duration::from_millis(1700), resets(5), &settings)
                .is_some()
        );
    }

    #[test]
    fn the_cap_allows_at_least_one() {
        let settings = PassiveSettings::default();
        assert_eq!(settings.max_ejected(1), 1);
        assert_eq!(settings.max_ejected(2), 1);
        assert_eq!(settings.max_ejected(10), 5);
    }
}
