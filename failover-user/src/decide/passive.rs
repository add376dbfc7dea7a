//! Passive detection: a backend ejected on what the data path saw of its
//! handshakes (`failover_common::Evidence`), before a probe notices. Pure:
//! the agent feeds samples of the pinned counters, this says whether and
//! why to eject. RSTs answering SYNs exactly and ICMP unreachable from a
//! backend's side are a dead service's first answer, acted on at once; an
//! application closing established connections never counts (the data
//! path sees to that). SYNs left unanswered are a silent failure's only
//! trace, but also what a lost SYN-ACK looks like: the agent confirms them
//! with a burst of probes first.

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
    /// SYNs sent since the backend's last SYN-ACK, each unanswered for
    /// `syn_timeout`, that call for confirming probes.
    pub unanswered: u64,
    /// How long a SYN may wait for its SYN-ACK; also the confirming
    /// probes' timeout. Shorter than `window`.
    pub syn_timeout: Duration,
    /// At most this share of the service's backends ejected by evidence at
    /// once (at least one).
    pub max_ejected_percent: u32,
}

/// Confirming probes sent at once when SYNs go unanswered; all must fail.
pub const CONFIRM_PROBES: usize = 3;

/// What the evidence says about a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The evidence, for logs and the journal.
    pub why: String,
    /// Whether probes must confirm it first (unanswered SYNs).
    pub confirm: bool,
}

impl Default for PassiveSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(1),
            resets: 3,
            unreachable: 3,
            unanswered: 5,
            syn_timeout: Duration::from_millis(200),
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
    /// The first sample, or the last one in which SYN-ACKs advanced.
    answered: Option<(Instant, Evidence)>,
}

impl Watch {
    /// Takes a sample of the backend's counters at `now`; returns the
    /// verdict if the window holds enough evidence.
    pub fn observe(
        &mut self,
        now: Instant,
        evidence: Evidence,
        settings: &PassiveSettings,
    ) -> Option<Verdict> {
        self.samples.push_back((now, evidence));
        if self
            .answered
            .is_none_or(|(_, last)| evidence.syn_acks > last.syn_acks)
        {
            self.answered = Some((now, evidence));
        }
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
        let unreachable = evidence.unreachable.saturating_sub(base.unreachable);
        let within = settings.window;
        let at_once = |why: String| Verdict {
            why,
            confirm: false,
        };
        // Handshakes it answered since it first refused one: a backend that
        // takes most connections is not dead; one answering none since
        // it started refusing is, however busy it was before.
        let answered_since = self
            .samples
            .iter()
            .position(|(_, e)| e.syn_resets > base.syn_resets)
            .map_or(0, |first| {
                let before = self.samples[first.saturating_sub(1)].1;
                evidence.syn_acks.saturating_sub(before.syn_acks)
            });
        if resets >= settings.resets && resets >= answered_since {
            return Some(at_once(format!(
                "{resets} RSTs answering SYNs, {answered_since} handshakes answered since the first, within {within:?} (threshold {})",
                settings.resets
            )));
        }
        if unreachable >= settings.unreachable {
            return Some(at_once(format!(
                "{unreachable} ICMP unreachable from its side within {within:?} (threshold {})",
                settings.unreachable
            )));
        }
        let unanswered = self.unanswered(now, evidence, settings.syn_timeout);
        (unanswered >= settings.unanswered).then(|| Verdict {
            why: format!(
                "{unanswered} SYNs unanswered for {:?} since its last SYN-ACK (threshold {})",
                settings.syn_timeout, settings.unanswered
            ),
            confirm: true,
        })
    }

    /// SYNs sent after the last sample in which SYN-ACKs advanced (or
    /// the first sample) and at least `timeout` before `now`, less those
    /// answered by a RST since (`latest` is the newest sample): none of
    /// them has been answered. Not bound by the window: a service with a
    /// SYN a second is judged as one with a thousand.
    fn unanswered(&self, now: Instant, latest: Evidence, timeout: Duration) -> u64 {
        let Some((answered_at, answered)) = self.answered else {
            return 0;
        };
        let Some((at, old_enough)) = self
            .samples
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= timeout)
        else {
            return 0;
        };
        if *at < answered_at {
            return 0;
        }
        let refused = latest.syn_resets.saturating_sub(answered.syn_resets);
        old_enough
            .syns
            .saturating_sub(answered.syns)
            .saturating_sub(refused)
    }

    /// Forgets the samples (after an ejection: the next one starts afresh).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.answered = None;
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
        let verdict = watch
            .observe(t0 + Duration::from_millis(40), resets(13), &settings)
            .expect("three resets within the window");
        assert!(
            verdict
                .why
                .starts_with("3 RSTs answering SYNs, 0 handshakes answered"),
            "{verdict:?}"
        );
        assert!(!verdict.confirm, "a RST is the backend's own answer");
    }

    #[test]
    fn a_busy_backend_that_starts_refusing_everything_is_ejected() {
        let settings = PassiveSettings::default();
        let mut watch = Watch::default();
        let t0 = Instant::now();
        // A hundred handshakes answered in the window, then refusals only.
        let busy = Evidence {
            syns: 100,
            syn_acks: 100,
            ..Evidence::default()
        };
        watch.observe(t0, Evidence::default(), &settings);
        watch.observe(t0 + Duration::from_millis(500), busy, &settings);
        let refusing = |n: u64| Evidence {
            syns: 100 + n,
            syn_resets: n,
            ..busy
        };
        assert_eq!(
            watch.observe(t0 + Duration::from_millis(510), refusing(2), &settings),
            None
        );
        assert!(
            watch
                .observe(t0 + Duration::from_millis(520), refusing(3), &settings)
                .is_some()
        );
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

    fn sent(syns: u64, syn_acks: u64) -> Evidence {
        Evidence {
            syns,
            syn_acks,
            ..Evidence::default()
        }
    }

    /// Samples every 10 ms from `t0`: (syns, syn_acks) per sample; the
    /// verdicts.
    fn feed(counts: &[(u64, u64)]) -> Vec<Option<Verdict>> {
        let settings = PassiveSettings {
            syn_timeout: Duration::from_millis(50),
            ..PassiveSettings::default()
        };
        let mut watch = Watch::default();
        let t0 = Instant::now();
        counts
            .iter()
            .enumerate()
            .map(|(i, &(syns, acks))| {
                let at = t0 + Duration::from_millis(10 * i as u64);
                watch.observe(at, sent(syns, acks), &settings)
            })
            .collect()
    }

    #[test]
    fn syns_unanswered_past_the_timeout_call_for_confirmation() {
        // Answered up to sample 2, then a SYN per sample and no SYN-ACK.
        let mut counts = vec![(1, 1), (2, 2), (3, 3)];
        counts.extend((4..20).map(|syns| (syns, 3)));
        let verdicts = feed(&counts);
        let first = verdicts
            .iter()
            .position(Option::is_some)
            .expect("a verdict");
        // Five SYNs after sample 2, the fifth sent 50 ms before: sample 12.
        assert_eq!(first, 12, "{verdicts:?}");
        let verdict = verdicts[first].clone().unwrap();
        assert!(verdict.confirm);
        assert!(
            verdict.why.starts_with("5 SYNs unanswered for 50ms"),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_slow_trickle_of_unanswered_syns_is_judged_beyond_the_window() {
        let settings = PassiveSettings {
            syn_timeout: Duration::from_millis(50),
            ..PassiveSettings::default()
        };
        let mut watch = Watch::default();
        let t0 = Instant::now();
        watch.observe(t0, sent(10, 10), &settings);
        // A SYN every 600 ms, never answered: the 5th, 50 ms later, decides.
        let mut verdict = None;
        for tick in 1..=400u64 {
            let at = t0 + Duration::from_millis(10 * tick);
            let syns = 10 + (10 * tick) / 600;
            verdict = watch.observe(at, sent(syns, 10), &settings);
            if verdict.is_some() {
                assert_eq!(10 * tick, 3050, "{verdict:?}");
                break;
            }
        }
        assert!(verdict.is_some());
    }

    #[test]
    fn syns_refused_with_a_rst_are_not_unanswered() {
        let settings = PassiveSettings {
            syn_timeout: Duration::from_millis(50),
            resets: 1000,
            ..PassiveSettings::default()
        };
        let mut watch = Watch::default();
        let t0 = Instant::now();
        for i in 0..20u64 {
            let at = t0 + Duration::from_millis(10 * i);
            let refused = Evidence {
                syns: i,
                syn_resets: i,
                ..Evidence::default()
            };
            assert_eq!(watch.observe(at, refused, &settings), None, "sample {i}");
        }
    }

    #[test]
    fn syns_still_being_answered_are_no_evidence() {
        // Many SYNs, answered a sample later each time.
        let counts: Vec<(u64, u64)> = (0..100u64)
            .map(|i| (i * 3, (i * 3).saturating_sub(3)))
            .collect();
        assert!(feed(&counts).iter().all(Option::is_none));
    }

    #[test]
    fn syns_younger_than_the_timeout_are_no_evidence() {
        // Twenty SYNs at once, then nothing: judged only 50 ms later.
        let counts = [(0, 0), (20, 0), (20, 0), (20, 0), (20, 0), (20, 0), (20, 0)];
        let verdicts = feed(&counts);
        assert!(verdicts[..6].iter().all(Option::is_none), "{verdicts:?}");
        assert!(verdicts[6].is_some(), "{verdicts:?}");
    }

    #[test]
    fn the_cap_allows_at_least_one() {
        let settings = PassiveSettings::default();
        assert_eq!(settings.max_ejected(1), 1);
        assert_eq!(settings.max_ejected(2), 1);
        assert_eq!(settings.max_ejected(10), 5);
    }
}
