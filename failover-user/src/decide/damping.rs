//! Flap damping, per backend (the semantics of Cisco's IP event
//! dampening): every time the backend fails — its probes or the data
//! path's evidence — it earns a penalty that decays by half every
//! `half_life`. Past `suppress` it is suppressed: kept out of new-flow
//! selection even while healthy, until the penalty decays below `reuse`.
//! The penalty is capped so that suppression ends at most `max_suppress`
//! after the last failure. Pure: the agent tells it failures and hands
//! the policy the end of a suppression.

use std::time::{Duration, Instant};

/// A service's `[services.damping]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DampingSettings {
    pub half_life: Duration,
    /// Penalty at or above which the backend is suppressed.
    pub suppress: u32,
    /// Penalty below which a suppressed backend is used again.
    pub reuse: u32,
    /// Longest suppression after the last failure.
    pub max_suppress: Duration,
    /// Penalty per failure.
    pub penalty: u32,
}

impl Default for DampingSettings {
    fn default() -> Self {
        Self {
            half_life: Duration::from_secs(10),
            suppress: 2000,
            reuse: 1000,
            max_suppress: Duration::from_secs(60),
            penalty: 1000,
        }
    }
}

impl DampingSettings {
    /// The highest penalty: one that decays to `reuse` in `max_suppress`.
    pub fn ceiling(&self) -> f64 {
        let halvings = self.max_suppress.as_secs_f64() / self.half_life.as_secs_f64();
        f64::from(self.reuse) * halvings.exp2()
    }

    /// Whether the ceiling lets the penalty reach `suppress`.
    pub fn can_suppress(&self) -> bool {
        self.ceiling() >= f64::from(self.suppress)
    }

    /// The shortest `max_suppress` that lets it reach `suppress`.
    pub fn min_max_suppress(&self) -> Duration {
        let halvings = (f64::from(self.suppress) / f64::from(self.reuse)).log2();
        self.half_life.mul_f64(halvings.max(0.0))
    }
}

/// A backend's penalty. Whether it is suppressed is the service policy's
/// to hold (`ServicePolicy::suppress`): one home for who takes new flows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Damping {
    /// The penalty as of `at`.
    penalty: f64,
    at: Option<Instant>,
}

impl Damping {
    /// A penalty of `penalty` as of `at` (a saved record).
    pub fn resumed(penalty: f64, at: Instant) -> Self {
        Self {
            penalty,
            at: Some(at),
        }
    }

    /// The penalty and when it was set, to save; `None` if it never was.
    pub fn saved(&self) -> Option<(f64, Instant)> {
        Some((self.penalty, self.at?))
    }

    /// The penalty at `now`.
    pub fn penalty(&self, now: Instant, settings: &DampingSettings) -> f64 {
        let Some(at) = self.at else {
            return 0.0;
        };
        let halvings =
            now.saturating_duration_since(at).as_secs_f64() / settings.half_life.as_secs_f64();
        self.penalty * (-halvings).exp2()
    }

    /// The backend failed at `now`: its penalty grows. Returns until when
    /// it is to be suppressed: if the penalty reached `suppress`, or it is
    /// suppressed already (`suppressed`; the end moves out).
    pub fn failed(
        &mut self,
        now: Instant,
        settings: &DampingSettings,
        suppressed: bool,
    ) -> Option<Instant> {
        let penalty =
            (self.penalty(now, settings) + f64::from(settings.penalty)).min(settings.ceiling());
        self.penalty = penalty;
        self.at = Some(now);
        (suppressed || penalty >= f64::from(settings.suppress)).then(|| self.reuse_at(settings))
    }

    /// When the penalty decays below `reuse`.
    fn reuse_at(&self, settings: &DampingSettings) -> Instant {
        let at = self.at.unwrap_or_else(Instant::now);
        let ratio = self.penalty / f64::from(settings.reuse);
        let halvings = if ratio > 1.0 { ratio.log2() } else { 0.0 };
        at + settings.half_life.mul_f64(halvings) + Duration::from_millis(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_penalty_halves_every_half_life() {
        let settings = DampingSettings::default();
        let mut damping = Damping::default();
        let t0 = Instant::now();
        damping.failed(t0, &settings, false);
        let later = damping.penalty(t0 + settings.half_life, &settings);
        assert!((later - 500.0).abs() < 1e-6, "{later}");
        let much_later = damping.penalty(t0 + settings.half_life * 3, &settings);
        assert!((much_later - 125.0).abs() < 1e-6, "{much_later}");
    }

    #[test]
    fn a_single_failure_never_suppresses() {
        let settings = DampingSettings::default();
        let mut damping = Damping::default();
        assert_eq!(damping.failed(Instant::now(), &settings, false), None);
    }

    #[test]
    fn failures_close_together_suppress_until_the_penalty_decays_to_reuse() {
        let settings = DampingSettings::default();
        let mut damping = Damping::default();
        let t0 = Instant::now();
        // A failure every 4 s (down 2 s, up 2 s): 1000, 1758, 2332.
        assert_eq!(damping.failed(t0, &settings, false), None);
        assert_eq!(damping.failed(t0 + secs(4.0), &settings, false), None);
        let until = damping
            .failed(t0 + secs(8.0), &settings, false)
            .expect("suppressed at the third");
        // 2332 halves to 1000 in log2(2.332) half-lives: 12.2 s.
        let after = until.duration_since(t0 + secs(8.0)).as_secs_f64();
        assert!((after - 12.22).abs() < 0.05, "{after}");
        assert!(damping.penalty(until, &settings) < f64::from(settings.reuse));
        // Suppressed, a penalty between reuse and suppress keeps it so.
        let mut mild = Damping::default();
        mild.failed(t0, &settings, false);
        assert!(mild.failed(t0 + secs(30.0), &settings, true).is_some());
        assert!(mild.failed(t0 + secs(90.0), &settings, false).is_none());
    }

    #[test]
    fn steady_flapping_stays_suppressed_and_max_suppress_bounds_the_end() {
        let settings = DampingSettings::default();
        let mut damping = Damping::default();
        let t0 = Instant::now();
        let mut until = None;
        let mut last = t0;
        for i in 0..600 {
            // Ten minutes of a failure every second.
            last = t0 + secs(f64::from(i));
            until = damping.failed(last, &settings, until.is_some());
            assert!(i < 2 || until.is_some_and(|u| u > last), "flap {i}");
        }
        let after = until.unwrap().duration_since(last);
        assert!(after <= settings.max_suppress + secs(0.01), "{after:?}");
        // The ceiling: a penalty that decays to reuse in max_suppress.
        let ceiling = settings.ceiling();
        let mut capped = Damping::default();
        for i in 0..1000 {
            capped.failed(t0 + Duration::from_millis(i), &settings, true);
        }
        let penalty = capped.penalty(t0 + Duration::from_millis(999), &settings);
        assert!((penalty - ceiling).abs() < 1.0, "{penalty} vs {ceiling}");
    }
}
