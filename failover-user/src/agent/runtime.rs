//! Per-service runtime state: the plan it came from, each backend's health
//! and probe statistics, and the service's policy.

use std::time::Instant;

use crate::{
    Dataplane,
    config::{AgentConfig, ServicePlan},
    dataplane::ServiceEntry,
    dataplane::error::DataplaneError,
    decide::{
        health::{Flip, Health, ProbeOutcome},
        policy::{Admin, ServicePolicy},
        select,
    },
    model::BackendState,
    outputs::telemetry::{BackendView, ProbeStats, ServiceView},
};

pub(crate) struct BackendRuntime {
    pub name: String,
    pub id: u32,
    pub health: Health,
    pub stats: ProbeStats,
    /// The data path's evidence of it, sampled (services with passive
    /// detection only).
    pub watch: crate::decide::passive::Watch,
    /// When an ejection on that evidence was last refused (the cap, or the
    /// last healthy backend): its warning is logged at most every 10 s.
    pub passive_refused_at: Option<Instant>,
    /// Probes are confirming the evidence against it, since this services
    /// epoch (a flag of another epoch means nothing).
    pub confirming: Option<u64>,
    /// Its flap-damping penalty (services with `[services.damping]`).
    pub damping: crate::decide::damping::Damping,
    /// Since when its share of new flows ramps up (slow start).
    pub ramp_since: Option<Instant>,
    /// Its evidence at the first failure of the current run of failed
    /// probes (`decide::second_opinion`).
    pub streak_evidence: Option<(Instant, failover_common::Evidence)>,
    /// When a flip the data path contradicted was last logged.
    pub kept_logged_at: Option<Instant>,
    /// Cold standbys only.
    pub cold: Option<ColdState>,
}

/// Where a cold standby is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColdState {
    /// Not probed, takes nothing.
    Dormant,
    /// Started (command run, probes running); must pass `rise` probes by then.
    Starting { since: Instant, deadline: Instant },
    /// Came up; probed like any standby from now on.
    Started,
    /// Did not come up in time; not probed, retried from `retry_at`.
    Failed { retry_at: Instant },
}

pub(crate) struct ServiceRuntime {
    pub name: String,
    pub id: u32,
    /// Whether any backend is a cold standby (skips the cold checks otherwise).
    pub has_cold: bool,
    pub plan: ServicePlan,
    pub backends: Vec<BackendRuntime>,
    pub policy: ServicePolicy,
    /// The `FO_ADMIN` records last written, by backend id.
    pub saved: std::collections::BTreeMap<
        u32,
        (failover_common::AdminRecord, failover_common::TimersRecord),
    >,
}

/// Why new flows moved, for logs and events.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cause {
    Failed {
        first_failure: Option<Instant>,
        /// When the probe result that decided the flip completed.
        decided: Option<Instant>,
    },
    Recovered,
    Timer,
    Operator(&'static str),
}

impl Cause {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Failed { .. } => "backend failed",
            Self::Recovered => "backend recovered",
            Self::Timer => "failback delay elapsed or drain deadline",
            Self::Operator(what) => what,
        }
    }
}

/// The probe results that decided a flip, as one line.
pub(crate) fn evidence(flip: &Flip) -> String {
    if let Some(why) = &flip.passive {
        return format!("data path: {why}");
    }
    flip.evidence
        .iter()
        .map(|o| match &o.error {
            None => format!("ok {:?}", o.latency),
            Some(err) => format!("fail {:?} ({})", o.latency, crate::util::chain(err)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ServiceRuntime {
    /// Builds the runtime of `plan` whose backends have these ids: from the
    /// state an earlier agent saved where there is one, else from the data
    /// path's current state (adopted or fresh).
    pub fn new(
        plan: &ServicePlan,
        id: u32,
        ids: &[u32],
        dataplane: &Dataplane,
    ) -> Result<Self, DataplaneError> {
        let mut backends = Vec::new();
        let mut members = Vec::new();
        let (saved, switched_to) = super::persist::saved_states(dataplane, ids);
        let timers = super::persist::saved_timers(dataplane, ids);
        for ((backend, id), saved) in plan.backends.iter().zip(ids).zip(&saved) {
            let raw = dataplane.backends_map().get(*id)?.state;
            let state = BackendState::from_raw(raw).unwrap_or(BackendState::Down);
            members.push((backend.spec.tier, state));
            let healthy = saved.map_or(state != BackendState::Down, |s| s.healthy);
            backends.push(BackendRuntime {
                name: backend.name.clone(),
                id: *id,
                health: Health::new(backend.probe.rise, backend.probe.fall, healthy),
                stats: ProbeStats::default(),
                watch: Default::default(),
                passive_refused_at: None,
                confirming: None,
                damping: Default::default(),
                ramp_since: None,
                streak_evidence: None,
                kept_logged_at: None,
                // An adopted cold standby that is up stays started.
                cold: backend.cold.as_ref().map(|_| {
                    if healthy {
                        ColdState::Started
                    } else {
                        ColdState::Dormant
                    }
                }),
            });
        }
        let mut policy = ServicePolicy::new(plan.failback, members)
            .n_plus_one(plan.mode == crate::decide::select::Mode::NPlusOne)
            .dead_flows(plan.dead_flows)
            .quorum(plan.quorum)
            .resume(&saved, switched_to);
        // Flap damping and slow start resume too, where the service has them.
        for (b, saved) in timers.into_iter().enumerate() {
            let Some(saved) = saved else {
                continue;
            };
            if plan.damping.is_some() {
                backends[b].damping = saved.damping;
                if let Some(until) = saved.suppressed_until {
                    policy.resume_suppression(b, until);
                }
            }
            if plan.slow_start.is_some() {
                backends[b].ramp_since = saved.slow_start_since;
            }
        }
        Ok(Self {
            name: plan.name.clone(),
            id,
            has_cold: plan.backends.iter().any(|b| b.cold.is_some()),
            plan: plan.clone(),
            backends,
            policy,
            saved: Default::default(),
        })
    }

    /// Records a probe result; returns the health flip it completed, if any.
    pub fn record_probe(&mut self, backend: usize, outcome: ProbeOutcome) -> Option<Flip> {
        let runtime = self.backends.get_mut(backend)?;
        runtime
            .stats
            .record(outcome.ok, outcome.latency, outcome.error.as_ref());
        runtime.health.record(outcome)
    }

    /// Who takes new flows: the selection published in the data path for
    /// this service (names, in configuration order).
    pub fn active_names(&self, dataplane: &Dataplane) -> Vec<String> {
        let ids = dataplane
            .service(self.id)
            .map(ServiceEntry::new_flows_to)
            .unwrap_or_default();
        self.names_of(&ids)
    }

    /// Who would take new flows once `policy`'s states are published: the
    /// same decision, on the states a change would write (dry runs, reports
    /// of what an operation does).
    pub fn predicted_names(
        &self,
        dataplane: &Dataplane,
        policy: &ServicePolicy,
        now: Instant,
    ) -> Vec<String> {
        let Some(entry) = dataplane.service(self.id) else {
            return Vec::new();
        };
        let mut backends = entry.backends.clone();
        for (backend, state) in self.backends.iter().zip(policy.states(now)) {
            if let Some(spec) = backends.get_mut(&backend.id) {
                spec.state = state;
            }
        }
        self.names_of(&select::new_flows_to(&backends, entry.settings.mode))
    }

    /// Names of the backends with these ids, in configuration order.
    fn names_of(&self, ids: &[u32]) -> Vec<String> {
        self.backends
            .iter()
            .filter(|b| ids.contains(&b.id))
            .map(|b| b.name.clone())
            .collect()
    }

    /// Index of the backend called `name`.
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }

    pub fn view(&self, dataplane: &Dataplane) -> ServiceView {
        let now = Instant::now();
        let backends = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let plan = &self.plan.backends[i];
                let admin = match self.policy.admin(i) {
                    Admin::Maintenance => Some("maintenance".to_owned()),
                    Admin::Drained { .. } => Some("drained".to_owned()),
                    Admin::Normal if self.policy.standing_by(i, now) => Some(format!(
                        "standing by: switchover to {}",
                        self.policy
                            .switched_to()
                            .map_or("?", |t| self.backends[t].name.as_str())
                    )),
                    Admin::Normal if b.cold == Some(ColdState::Dormant) => {
                        Some("cold standby".to_owned())
                    }
                    Admin::Normal if matches!(b.cold, Some(ColdState::Starting { .. })) => {
                        Some("cold standby starting".to_owned())
                    }
                    Admin::Normal if matches!(b.cold, Some(ColdState::Failed { .. })) => {
                        Some("cold standby failed to start".to_owned())
                    }
                    Admin::Normal if self.policy.suppressed_until(i).is_some() => {
                        Some(if self.policy.desired(i, now) == BackendState::Up {
                            "suppressed (flapping), but the only backend for new flows".to_owned()
                        } else {
                            "suppressed (flapping)".to_owned()
                        })
                    }
                    Admin::Normal => {
                        match (self.policy.hold(i), self.policy.hold_remaining(i, now)) {
                            (_, Some(left)) => {
                                Some(format!("failback in {:.1}s", left.as_secs_f64()))
                            }
                            (Some(_), None) => Some("held for operator failback".to_owned()),
                            _ => None,
                        }
                    }
                };
                let state = dataplane
                    .backends_map()
                    .get(b.id)
                    .ok()
                    .and_then(|v| BackendState::from_raw(v.state))
                    .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                BackendView {
                    name: b.name.clone(),
                    id: b.id,
                    address: plan.spec.addr.to_string(),
                    port: plan.spec.port,
                    tier: plan.spec.tier,
                    weight: plan.spec.weight,
                    healthy: b.health.healthy(),
                    state,
                    admin,
                    damping_penalty: self
                        .plan
                        .damping
                        .map(|settings| b.damping.penalty(now, &settings).round()),
                    suppressed_for_s: self
                        .policy
                        .suppressed_until(i)
                        .map(|until| until.saturating_duration_since(now).as_secs_f64()),
                    slow_start_share: b.ramp_since.and_then(|_| {
                        let spec = dataplane.service(self.id)?.backends.get(&b.id)?;
                        Some(f64::from(spec.ramp) / f64::from(crate::model::RAMP_FULL))
                    }),
                    probe: b.stats.clone(),
                }
            })
            .collect();
        ServiceView {
            name: self.name.clone(),
            id: self.id,
            vip: self.plan.spec.vip.to_string(),
            port: self.plan.spec.port,
            protocol: self.plan.spec.proto.to_string(),
            active: self.active_names(dataplane),
            switched_to: self
                .policy
                .switched_to()
                .map(|t| self.backends[t].name.clone()),
            backends,
        }
    }
}

impl super::Agent {
    /// Programs the maps for `config` and builds the runtimes. Services whose
    /// plan is unchanged keep their runtime (health, holds, drains) from
    /// `previous`; their maps are rewritten with identical values.
    pub(super) fn apply_services(
        &mut self,
        config: &AgentConfig,
        previous: &[ServiceRuntime],
    ) -> Result<Vec<ServiceRuntime>, DataplaneError> {
        let wanted: Vec<_> = config.services.iter().map(ServicePlan::wanted).collect();
        let ids = self.dataplane.reconcile(&wanted)?;
        // Confirmations under way are about the old indexes.
        self.services_epoch += 1;
        let mut runtimes = Vec::new();
        for (plan, (id, backend_ids)) in config.services.iter().zip(&ids) {
            match previous.iter().position(|old| &old.plan == plan) {
                Some(_) => {
                    // Unchanged: rebuild from the old one (moved below).
                    runtimes.push(None);
                }
                None => runtimes.push(Some(ServiceRuntime::new(
                    plan,
                    *id,
                    backend_ids,
                    &self.dataplane,
                )?)),
            }
        }
        Ok(runtimes
            .into_iter()
            .zip(&config.services)
            .map(|(built, plan)| match built {
                Some(runtime) => runtime,
                None => {
                    let old = previous
                        .iter()
                        .find(|old| &old.plan == plan)
                        .expect("found above");
                    old.clone_state()
                }
            })
            .collect())
    }
}

impl ServiceRuntime {
    /// A copy carrying the same health, statistics and policy state.
    fn clone_state(&self) -> Self {
        Self {
            name: self.name.clone(),
            id: self.id,
            has_cold: self.has_cold,
            plan: self.plan.clone(),
            backends: self
                .backends
                .iter()
                .map(|b| BackendRuntime {
                    name: b.name.clone(),
                    id: b.id,
                    health: b.health.clone(),
                    stats: b.stats.clone(),
                    watch: b.watch.clone(),
                    passive_refused_at: b.passive_refused_at,
                    confirming: None,
                    damping: b.damping.clone(),
                    ramp_since: b.ramp_since,
                    streak_evidence: b.streak_evidence,
                    kept_logged_at: b.kept_logged_at,
                    cold: b.cold,
                })
                .collect(),
            policy: self.policy.clone(),
            saved: self.saved.clone(),
        }
    }
}
