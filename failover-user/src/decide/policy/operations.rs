//! Operator requests: drain, restore, maintenance, switchover and its
//! release. Each returns the data-path changes it makes, or why it is
//! refused (nothing changes then).

use std::time::{Duration, Instant};

use super::{Admin, Change, ServicePolicy};

/// Why the policy refuses an operator request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("draining it would leave no backend for new flows")]
    DrainLeavesNone,
    #[error("maintenance on it would leave no backend for new flows")]
    MaintenanceLeavesNone,
    #[error("the target is not healthy")]
    TargetUnhealthy,
    #[error("the target is in maintenance")]
    TargetInMaintenance,
}

impl ServicePolicy {
    /// Stops new flows to `backend`; established ones stay until `deadline`.
    /// Refused when nothing would take new flows any more.
    pub fn drain(
        &mut self,
        backend: usize,
        deadline: Option<Duration>,
        now: Instant,
    ) -> Result<Vec<Change>, Refused> {
        let before = self.clone();
        self.members[backend].admin = Admin::Drained {
            until: deadline.map(|d| now + d),
        };
        self.end_switchover_to(backend);
        if self.active_tier().is_none() {
            *self = before;
            return Err(Refused::DrainLeavesNone);
        }
        Ok(self.changes(now))
    }

    /// Ends a drain or maintenance: health decides again (no failback hold:
    /// the operator asked for it).
    pub fn restore(&mut self, backend: usize, now: Instant) -> Vec<Change> {
        let member = &mut self.members[backend];
        member.admin = Admin::Normal;
        member.hold = None;
        member.serving = member.healthy;
        self.changes(now)
    }

    /// Takes a backend out of service entirely (its flows are re-picked).
    /// Refused when nothing would take new flows any more.
    pub fn maintenance(&mut self, backend: usize, now: Instant) -> Result<Vec<Change>, Refused> {
        let before = self.clone();
        self.members[backend].admin = Admin::Maintenance;
        self.end_switchover_to(backend);
        if self.active_tier().is_none() {
            *self = before;
            return Err(Refused::MaintenanceLeavesNone);
        }
        Ok(self.changes(now))
    }

    fn end_switchover_to(&mut self, backend: usize) {
        if self.switched_to == Some(backend) {
            self.switched_to = None;
        }
    }

    /// Planned failover: `target` alone takes new flows from now on, while
    /// it serves. Every other backend keeps its admin state and its
    /// established flows; those that would share or take new flows stand by
    /// (draining in the data path) and take over if the target fails.
    pub fn switchover(&mut self, target: usize, now: Instant) -> Result<Vec<Change>, Refused> {
        if !self.members[target].healthy {
            return Err(Refused::TargetUnhealthy);
        }
        if self.members[target].admin == Admin::Maintenance {
            return Err(Refused::TargetInMaintenance);
        }
        let member = &mut self.members[target];
        // Choosing a drained backend as the target undrains it.
        member.admin = Admin::Normal;
        member.hold = None;
        member.serving = true;
        self.switched_to = Some(target);
        Ok(self.changes(now))
    }

    /// Ends a switchover: tiers and health decide again.
    pub fn release_switchover(&mut self, now: Instant) -> Vec<Change> {
        self.switched_to = None;
        self.changes(now)
    }
}
