//! Failover and failback decisions for one service, from its backends'
//! health flips. Pure: no I/O, time passed in, so every rule is unit-tested.
//!
//! The data path sends new flows to the most preferred tier that has a
//! serving backend, so failover is simply "stop serving the failed backend".
//! Failback is where policy lives: a recovered backend in a *better* tier
//! than the one now serving is held (auto: for `failback_delay` of continued
//! health; manual: until an operator releases it) so a flapping primary
//! cannot drag traffic back and forth. A recovered backend in the serving
//! tier or a worse one rejoins at once, and if nothing is serving at all,
//! every healthy backend serves immediately.

use std::time::{Duration, Instant};

use crate::config::Failback;

/// What the agent must do to the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Mark the backend up (serving) or down.
    Serve { backend: usize, serving: bool },
}

/// Why a backend that is healthy does not serve yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    Until(Instant),
    Operator,
}

#[derive(Clone, Debug)]
struct Member {
    tier: u8,
    healthy: bool,
    serving: bool,
    hold: Option<Hold>,
}

#[derive(Clone, Debug)]
pub struct ServicePolicy {
    failback: Failback,
    members: Vec<Member>,
}

impl ServicePolicy {
    /// `members`: (tier, healthy and serving now) per backend, in backend order.
    pub fn new(failback: Failback, members: impl IntoIterator<Item = (u8, bool)>) -> Self {
        Self {
            failback,
            members: members
                .into_iter()
                .map(|(tier, up)| Member {
                    tier,
                    healthy: up,
                    serving: up,
                    hold: None,
                })
                .collect(),
        }
    }

    /// The most preferred tier with a serving backend.
    pub fn active_tier(&self) -> Option<u8> {
        self.members
            .iter()
            .filter(|m| m.serving)
            .map(|m| m.tier)
            .min()
    }

    pub fn tier(&self, backend: usize) -> u8 {
        self.members[backend].tier
    }

    pub fn serving(&self, backend: usize) -> bool {
        self.members[backend].serving
    }

    pub fn hold(&self, backend: usize) -> Option<Hold> {
        self.members[backend].hold
    }

    /// A backend's health flipped.
    pub fn on_health(&mut self, backend: usize, healthy: bool, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let member = &mut self.members[backend];
        member.healthy = healthy;
        if !healthy {
            member.hold = None;
            if member.serving {
                member.serving = false;
                actions.push(Action::Serve {
                    backend,
                    serving: false,
                });
            }
            // Losing the last serving backend releases every hold.
            if self.active_tier().is_none() {
                actions.extend(self.release(|_| true));
            }
            return actions;
        }
        let better_than_active = self
            .active_tier()
            .is_some_and(|active| self.members[backend].tier < active);
        let member = &mut self.members[backend];
        if member.serving {
            return actions;
        }
        if better_than_active {
            member.hold = Some(match self.failback {
                Failback::Auto { delay } => Hold::Until(now + delay),
                Failback::Manual => Hold::Operator,
            });
        } else {
            member.serving = true;
            actions.push(Action::Serve {
                backend,
                serving: true,
            });
        }
        actions
    }

    /// Releases holds whose delay has passed.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        self.release(|hold| matches!(hold, Hold::Until(at) if at <= now))
    }

    /// Operator-driven failback: releases every hold.
    pub fn failback_now(&mut self) -> Vec<Action> {
        self.release(|_| true)
    }

    /// When the next timed hold ends, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .iter()
            .filter_map(|m| match m.hold {
                Some(Hold::Until(at)) => Some(at),
                _ => None,
            })
            .min()
    }

    fn release(&mut self, matches: impl Fn(Hold) -> bool) -> Vec<Action> {
        let mut actions = Vec::new();
        for (backend, member) in self.members.iter_mut().enumerate() {
            if let Some(hold) = member.hold
                && matches(hold)
            {
                member.hold = None;
                if member.healthy && !member.serving {
                    member.serving = true;
                    actions.push(Action::Serve {
                        backend,
                        serving: true,
                    });
                }
            }
        }
        actions
    }

    /// Time left on a backend's timed hold (for status output).
    pub fn hold_remaining(&self, backend: usize, now: Instant) -> Option<Duration> {
        match self.members[backend].hold {
            Some(Hold::Until(at)) => Some(at.saturating_duration_since(now)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: usize = 0;
    const STANDBY: usize = 1;

    fn active_passive(failback: Failback) -> ServicePolicy {
        ServicePolicy::new(failback, [(0, true), (1, true)])
    }

    fn serve(backend: usize, serving: bool) -> Action {
        Action::Serve { backend, serving }
    }

    #[test]
    fn failover_stops_serving_the_failed_primary() {
        let mut policy = active_passive(Failback::Manual);
        assert_eq!(policy.active_tier(), Some(0));
        assert_eq!(
            policy.on_health(PRIMARY, false, Instant::now()),
            vec![serve(PRIMARY, false)]
        );
        assert_eq!(policy.active_tier(), Some(1));
    }

    #[test]
    fn auto_failback_waits_for_the_delay() {
        let delay = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut policy = active_passive(Failback::Auto { delay });
        policy.on_health(PRIMARY, false, t0);
        assert!(
            policy.on_health(PRIMARY, true, t0).is_empty(),
            "held, not serving yet"
        );
        assert_eq!(policy.next_deadline(), Some(t0 + delay));
        assert!(policy.on_tick(t0 + delay / 2).is_empty());
        assert_eq!(policy.on_tick(t0 + delay), vec![serve(PRIMARY, true)]);
        assert_eq!(policy.active_tier(), Some(0));
        // The standby keeps serving: its established flows stay on it.
        assert!(policy.serving(STANDBY));
    }

    #[test]
    fn failing_again_during_the_hold_cancels_the_failback() {
        let delay = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut policy = active_passive(Failback::Auto { delay });
        policy.on_health(PRIMARY, false, t0);
        policy.on_health(PRIMARY, true, t0);
        policy.on_health(PRIMARY, false, t0 + Duration::from_secs(1));
        assert!(policy.on_tick(t0 + delay * 2).is_empty());
        assert!(!policy.serving(PRIMARY));
    }

    #[test]
    fn manual_failback_waits_for_the_operator() {
        let t0 = Instant::now();
        let mut policy = active_passive(Failback::Manual);
        policy.on_health(PRIMARY, false, t0);
        assert!(policy.on_health(PRIMARY, true, t0).is_empty());
        assert_eq!(policy.hold(PRIMARY), Some(Hold::Operator));
        assert!(policy.on_tick(t0 + Duration::from_secs(3600)).is_empty());
        assert_eq!(policy.failback_now(), vec![serve(PRIMARY, true)]);
    }

    #[test]
    fn losing_the_standby_while_the_primary_is_held_serves_the_primary_at_once() {
        let t0 = Instant::now();
        let mut policy = active_passive(Failback::Manual);
        policy.on_health(PRIMARY, false, t0);
        policy.on_health(PRIMARY, true, t0);
        let actions = policy.on_health(STANDBY, false, t0);
        assert_eq!(actions, vec![serve(STANDBY, false), serve(PRIMARY, true)]);
    }

    #[test]
    fn recovery_in_the_serving_tier_or_with_nothing_serving_is_immediate() {
        let t0 = Instant::now();
        let mut policy = ServicePolicy::new(Failback::Manual, [(0, true), (0, true)]);
        policy.on_health(1, false, t0);
        assert_eq!(policy.on_health(1, true, t0), vec![serve(1, true)]);

        let mut policy = active_passive(Failback::Manual);
        policy.on_health(PRIMARY, false, t0);
        policy.on_health(STANDBY, false, t0);
        assert_eq!(
            policy.on_health(PRIMARY, true, t0),
            vec![serve(PRIMARY, true)]
        );
    }
}
