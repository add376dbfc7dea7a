//! Failover, failback and planned operations for one service, from its
//! backends' health flips and operator requests. Pure: no I/O, time passed
//! in, so every rule is unit-tested.
//!
//! The data path sends new flows to the most preferred tier that has an up
//! backend, so failover is simply "stop serving the failed backend".
//! Failback is where policy lives: a recovered backend in a *better* tier
//! than the one now serving is held (auto: for `failback_delay` of continued
//! health; manual: until an operator releases it) so a flapping primary
//! cannot drag traffic back and forth. A recovered backend in the serving
//! tier or a worse one rejoins at once, and if nothing is serving at all,
//! every healthy backend serves immediately.
//!
//! Operators override health with an administrative state: drained (no new
//! flows, established ones stay; at an optional deadline they are re-picked)
//! or maintenance (no traffic at all). A switchover makes its target the
//! only backend for new flows while the target serves: the others keep
//! their established flows and stand by, able to take over the moment the
//! target fails (which ends the switchover), and are never left drained.

mod operations;
pub use operations::Refused;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use crate::model::BackendState;

/// When new flows go back to a recovered backend of a better tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// After a recovered backend has stayed up for `delay`, new flows go back.
    Auto { delay: Duration },
    /// Stay on the standby until an operator says so.
    Manual,
}

/// A data-path state the agent must write for a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub backend: usize,
    pub state: BackendState,
}

/// Why a backend that is healthy does not serve yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    Until(Instant),
    Operator,
}

/// An operator's override of health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    /// Health decides.
    Normal,
    /// No new flows; established flows stay until `until` (then re-picked).
    Drained { until: Option<Instant> },
    /// No traffic at all.
    Maintenance,
}

/// One backend's state as the policy holds it: what an agent persists so
/// that its successor resumes exactly ([`ServicePolicy::resume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberState {
    pub healthy: bool,
    /// Eligible for new flows as far as health and failback holds go.
    pub serving: bool,
    pub hold: Option<Hold>,
    pub admin: Admin,
}

#[derive(Clone, Debug)]
struct Member {
    tier: u8,
    healthy: bool,
    /// Eligible for new flows as far as health and failback holds go.
    serving: bool,
    hold: Option<Hold>,
    admin: Admin,
    /// Flap damping: kept out of new flows until then, healthy or not
    /// (`decide::damping`).
    suppressed_until: Option<Instant>,
    /// The state last handed to the data path.
    applied: BackendState,
}

#[derive(Clone, Debug)]
pub struct ServicePolicy {
    failback: Failback,
    members: Vec<Member>,
    /// N+1: spares stand in for failed members of the best tier, so a
    /// recovering member is held (failback policy) while a spare serves.
    n_plus_one: bool,
    /// What happens to established flows of a failed backend.
    dead_flows: DeadFlows,
    /// Fewest healthy members the active tier needs, and what to do below.
    quorum: Option<(Quorum, QuorumPolicy)>,
    /// The target of a switchover: while it serves, it alone takes new
    /// flows. Ends when the target fails, is drained or put in maintenance,
    /// or the operator releases it.
    switched_to: Option<usize>,
}

/// What happens to the established flows of a backend that failed its checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeadFlows {
    /// Re-picked onto the new choice (the backend is marked down).
    #[default]
    Rehash,
    /// Left where they are until they end (the backend is marked draining):
    /// for backends that fail health checks but still serve.
    Keep,
    /// The data path answers their next packet with a TCP RST from the VIP
    /// so clients reconnect at once (UDP flows are re-picked).
    Reset,
}

/// `min_healthy`: a count, or a percentage of the tier's members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    Count(u32),
    Percent(u32),
}

impl Quorum {
    fn needed(self, members: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => (members * p as usize).div_ceil(100),
        }
    }
}

/// What a service does when its active tier has fewer healthy members than
/// `min_healthy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuorumPolicy {
    /// The tier's healthy members stop taking new flows (drained); the next
    /// tier with quorum takes them.
    #[default]
    NextTier,
    /// Keep sending new flows to every member of the tier, healthy or not
    /// (Envoy's panic mode).
    FailOpen,
    /// Take no new flows at all (dropped and counted as drop_no_backend).
    FailClosed,
}

impl ServicePolicy {
    /// `members`: (tier, data-path state now) per backend, in backend order.
    /// Up means healthy and serving; draining is taken as an operator drain.
    pub fn new(failback: Failback, members: impl IntoIterator<Item = (u8, BackendState)>) -> Self {
        Self {
            failback,
            members: members
                .into_iter()
                .map(|(tier, state)| Member {
                    tier,
                    healthy: state != BackendState::Down,
                    serving: state == BackendState::Up,
                    hold: None,
                    admin: if state == BackendState::Draining {
                        Admin::Drained { until: None }
                    } else {
                        Admin::Normal
                    },
                    suppressed_until: None,
                    applied: state,
                })
                .collect(),
            n_plus_one: false,
            dead_flows: DeadFlows::Rehash,
            quorum: None,
            switched_to: None,
        }
    }

    /// Takes over the states an earlier agent saved (`None`: keep what
    /// [`Self::new`] derived from the data path) and its switchover. What
    /// the data path has stays the baseline: [`Self::on_tick`] then yields
    /// whatever the saved state changes (e.g. a deadline that passed while
    /// no agent ran).
    pub fn resume(mut self, saved: &[Option<MemberState>], switched_to: Option<usize>) -> Self {
        for (member, state) in self.members.iter_mut().zip(saved) {
            if let Some(state) = state {
                member.healthy = state.healthy;
                member.serving = state.serving;
                member.hold = state.hold;
                member.admin = state.admin;
            }
        }
        self.switched_to = switched_to.filter(|&t| t < self.members.len());
        self
    }

    /// A backend's state, to persist.
    pub fn member_state(&self, backend: usize) -> MemberState {
        let member = &self.members[backend];
        MemberState {
            healthy: member.healthy,
            serving: member.serving,
            hold: member.hold,
            admin: member.admin,
        }
    }

    pub fn dead_flows(mut self, dead_flows: DeadFlows) -> Self {
        self.dead_flows = dead_flows;
        self
    }

    pub fn quorum(mut self, quorum: Option<(Quorum, QuorumPolicy)>) -> Self {
        self.quorum = quorum;
        self
    }

    /// Applies N+1 failback rules (see the field).
    pub fn n_plus_one(mut self, on: bool) -> Self {
        self.n_plus_one = on;
        self
    }

    fn takes_new_flows(member: &Member) -> bool {
        member.admin == Admin::Normal && member.serving
    }

    /// The most preferred tier with a backend taking new flows.
    pub fn active_tier(&self) -> Option<u8> {
        self.members
            .iter()
            .filter(|m| Self::takes_new_flows(m))
            .map(|m| m.tier)
            .min()
    }

    /// Whether the service runs N+1 (spares stand in for members).
    pub fn is_n_plus_one(&self) -> bool {
        self.n_plus_one
    }

    pub fn tier(&self, backend: usize) -> u8 {
        self.members[backend].tier
    }

    pub fn serving(&self, backend: usize) -> bool {
        self.members[backend].serving
    }

    pub fn healthy(&self, backend: usize) -> bool {
        self.members[backend].healthy
    }

    pub fn hold(&self, backend: usize) -> Option<Hold> {
        self.members[backend].hold
    }

    pub fn admin(&self, backend: usize) -> Admin {
        self.members[backend].admin
    }

    /// The data-path state a backend should have now.
    pub fn desired(&self, backend: usize, now: Instant) -> BackendState {
        self.states(now)[backend]
    }

    /// Every backend's data-path state: health and holds, operator overrides,
    /// the dead-flow policy, the quorum rule, then flap damping.
    pub fn states(&self, now: Instant) -> Vec<BackendState> {
        let mut states: Vec<BackendState> = self
            .members
            .iter()
            .map(|member| match member.admin {
                Admin::Maintenance => BackendState::Down,
                Admin::Drained { until: Some(at) } if at <= now => BackendState::Down,
                Admin::Drained { .. } => BackendState::Draining,
                Admin::Normal if member.serving => BackendState::Up,
                Admin::Normal if !member.healthy && self.dead_flows == DeadFlows::Keep => {
                    BackendState::Draining
                }
                Admin::Normal => BackendState::Down,
            })
            .collect();
        // Quorum counts health; a suppressed backend is healthy.
        if let Some((quorum, policy)) = self.quorum {
            self.apply_quorum(&mut states, quorum, policy);
        }
        self.apply_damping(&mut states);
        if let Some(target) = self.switched_to
            && states[target] == BackendState::Up
        {
            for i in self.competing_with(target, &states) {
                states[i] = BackendState::Draining;
            }
        }
        states
    }

    /// Suppressed backends take no new flows (their established flows
    /// stay: draining) — unless that would leave none taking them: a
    /// flapping backend beats no backend.
    fn apply_damping(&self, states: &mut [BackendState]) {
        let suppressed: Vec<usize> = (0..states.len())
            .filter(|&i| {
                states[i] == BackendState::Up && self.members[i].suppressed_until.is_some()
            })
            .collect();
        let up = states.iter().filter(|s| **s == BackendState::Up).count();
        if up == suppressed.len() {
            return;
        }
        for i in suppressed {
            states[i] = BackendState::Draining;
        }
    }

    /// Suppresses a backend until `until` (flap damping), or extends it.
    pub fn suppress(&mut self, backend: usize, until: Instant, now: Instant) -> Vec<Change> {
        self.members[backend].suppressed_until = Some(until);
        self.changes(now)
    }

    /// Restores a suppression an earlier agent saved, without changes:
    /// the next tick compares it with what the data path has.
    pub fn resume_suppression(&mut self, backend: usize, until: Instant) {
        self.members[backend].suppressed_until = Some(until);
    }

    /// Until when a backend is suppressed.
    pub fn suppressed_until(&self, backend: usize) -> Option<Instant> {
        self.members[backend].suppressed_until
    }

    /// Up backends that would share new flows with `target` (or take them
    /// from it): in tiers mode those of its tier or better, in N+1 all.
    fn competing_with(&self, target: usize, states: &[BackendState]) -> Vec<usize> {
        let tier = self.members[target].tier;
        (0..self.members.len())
            .filter(|&i| i != target && states[i] == BackendState::Up)
            .filter(|&i| self.n_plus_one || self.members[i].tier <= tier)
            .collect()
    }

    /// The switchover target, while there is one.
    pub fn switched_to(&self) -> Option<usize> {
        self.switched_to
    }

    /// Whether `backend` takes no new flows only because a switchover to
    /// another backend is in force.
    pub fn standing_by(&self, backend: usize, now: Instant) -> bool {
        let Some(target) = self.switched_to else {
            return false;
        };
        if target == backend {
            return false;
        }
        let mut unpinned = self.clone();
        unpinned.switched_to = None;
        unpinned.states(now)[backend] == BackendState::Up
            && self.states(now)[backend] == BackendState::Draining
    }

    /// A tier needs `min_healthy` of its members up (at most all of them).
    /// Next tier: tiers below quorum are skipped (their up members drained)
    /// in favour of the first tier that has it; if none has, health alone
    /// decides. Fail open / closed act on the first tier with up members.
    fn apply_quorum(&self, states: &mut [BackendState], quorum: Quorum, policy: QuorumPolicy) {
        let mut tiers: Vec<u8> = self.members.iter().map(|m| m.tier).collect();
        tiers.sort_unstable();
        tiers.dedup();
        let tier_of = |tier: u8| -> (Vec<usize>, Vec<usize>) {
            let members: Vec<usize> = (0..self.members.len())
                .filter(|&i| self.members[i].tier == tier && self.members[i].admin == Admin::Normal)
                .collect();
            let up = members
                .iter()
                .copied()
                .filter(|&i| states[i] == BackendState::Up)
                .collect();
            (members, up)
        };
        let meets = |members: &[usize], up: &[usize]| {
            up.len() >= quorum.needed(members.len()).min(members.len())
        };
        let Some(first) = tiers.iter().copied().find(|&t| !tier_of(t).1.is_empty()) else {
            return;
        };
        let (members, up) = tier_of(first);
        if meets(&members, &up) {
            return;
        }
        match policy {
            QuorumPolicy::NextTier => {
                let Some(target) = tiers.iter().copied().filter(|&t| t > first).find(|&t| {
                    let (members, up) = tier_of(t);
                    !up.is_empty() && meets(&members, &up)
                }) else {
                    return;
                };
                let skipped: Vec<usize> = tiers
                    .iter()
                    .copied()
                    .filter(|&t| t < target)
                    .flat_map(|t| tier_of(t).1)
                    .collect();
                for i in skipped {
                    states[i] = BackendState::Draining;
                }
            }
            QuorumPolicy::FailOpen => {
                for i in members {
                    states[i] = BackendState::Up;
                }
            }
            QuorumPolicy::FailClosed => {
                for state in states.iter_mut().filter(|s| **s == BackendState::Up) {
                    *state = BackendState::Draining;
                }
            }
        }
    }

    /// Data-path changes since the last call.
    fn changes(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        for (backend, state) in self.states(now).into_iter().enumerate() {
            if self.members[backend].applied != state {
                self.members[backend].applied = state;
                changes.push(Change { backend, state });
            }
        }
        changes
    }

    /// A backend's health flipped.
    pub fn on_health(&mut self, backend: usize, healthy: bool, now: Instant) -> Vec<Change> {
        self.members[backend].healthy = healthy;
        if !healthy {
            if self.switched_to == Some(backend) {
                self.switched_to = None;
            }
            let member = &mut self.members[backend];
            member.hold = None;
            member.serving = false;
            self.release_if_nothing_serves();
            return self.changes(now);
        }
        if !self.members[backend].serving {
            let tier = self.members[backend].tier;
            let better_than_active = self.active_tier().is_some_and(|active| tier < active);
            // N+1: a member of the best tier comes back while a spare stands in.
            let best = self.members.iter().map(|m| m.tier).min().unwrap_or(tier);
            let spare_serving = self
                .members
                .iter()
                .any(|m| m.tier > best && Self::takes_new_flows(m));
            let better_than_active =
                better_than_active || (self.n_plus_one && tier == best && spare_serving);
            let member = &mut self.members[backend];
            if better_than_active && member.admin == Admin::Normal {
                member.hold = Some(match self.failback {
                    Failback::Auto { delay } => Hold::Until(now + delay),
                    Failback::Manual => Hold::Operator,
                });
            } else {
                member.serving = true;
            }
        }
        self.changes(now)
    }

    /// Losing the last backend for new flows releases every hold.
    fn release_if_nothing_serves(&mut self) {
        if self.active_tier().is_none() {
            self.release(|_| true);
        }
    }

    /// Releases holds whose delay has passed, ends expired drains and
    /// suppressions.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Change> {
        self.release(|hold| matches!(hold, Hold::Until(at) if at <= now));
        for member in &mut self.members {
            if member.suppressed_until.is_some_and(|at| at <= now) {
                member.suppressed_until = None;
            }
        }
        self.changes(now)
    }

    /// Operator-driven failback: releases every hold.
    pub fn failback_now(&mut self, now: Instant) -> Vec<Change> {
        self.release(|_| true);
        self.changes(now)
    }

    /// Whether any backend waits for an operator failback or a delay.
    pub fn has_holds(&self) -> bool {
        self.members.iter().any(|m| m.hold.is_some())
    }

    /// When the next timed hold, drain deadline or suppression ends, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let holds = self.members.iter().filter_map(|m| match (m.hold, m.admin) {
            (Some(Hold::Until(at)), _) => Some(at),
            (_, Admin::Drained { until: Some(at) }) if m.applied != BackendState::Down => Some(at),
            _ => None,
        });
        let suppressions = self.members.iter().filter_map(|m| m.suppressed_until);
        holds.chain(suppressions).min()
    }

    fn release(&mut self, matches: impl Fn(Hold) -> bool) {
        for member in &mut self.members {
            if let Some(hold) = member.hold
                && matches(hold)
            {
                member.hold = None;
                if member.healthy {
                    member.serving = true;
                }
            }
        }
    }

    /// Time left on a backend's timed hold (for status output).
    pub fn hold_remaining(&self, backend: usize, now: Instant) -> Option<Duration> {
        match self.members[backend].hold {
            Some(Hold::Until(at)) => Some(at.saturating_duration_since(now)),
            _ => None,
        }
    }
}
