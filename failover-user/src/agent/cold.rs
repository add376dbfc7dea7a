//! Cold standbys: not probed until a service has nothing left for new flows;
//! then the optional `start_command` runs and the standby is probed until it
//! passes `rise` probes (it then serves, as any recovered backend would) or
//! its `start_timeout` passes (logged with the reason; probing stops, and it
//! is tried again after `start_retry` if it is still needed).

use std::time::Instant;

use tracing::{info, warn};

use super::{Agent, runtime::ColdState};
use crate::events::{Event, EventKind};

impl Agent {
    /// The next policy or cold-start deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let policy = self
            .services
            .iter()
            .filter_map(|s| s.policy.next_deadline());
        let cold = self
            .services
            .iter()
            .flat_map(|s| s.backends.iter())
            .filter_map(|b| match b.cold {
                Some(ColdState::Starting { deadline, .. }) => Some(deadline),
                Some(ColdState::Failed { retry_at }) => Some(retry_at),
                _ => None,
            });
        policy
            .chain(cold)
            .chain(self.resync.due())
            .chain(self.next_ramp_stage())
            .min()
    }

    /// Whether any service has cold standbys (whose start and retry
    /// deadlines the decision loop must follow).
    pub(super) fn has_cold_standbys(&self) -> bool {
        self.services.iter().any(|s| s.has_cold)
    }

    /// Promotes cold standbys of services with nothing for new flows, marks
    /// the ones that came up, and gives up on the ones past their deadline.
    /// Returns whether the set of probed backends changed.
    pub(super) fn update_cold_standbys(&mut self) -> bool {
        // Runs after every event of the decision loop: cheap when there is
        // nothing cold to look after.
        if !self.has_cold_standbys() {
            return false;
        }
        let now = Instant::now();
        // `changed`: the probed set changed; `shown`: what status shows did.
        let mut changed = false;
        let mut shown = false;
        for s in 0..self.services.len() {
            if !self.services[s].has_cold {
                continue;
            }
            let nothing_serves = self.services[s].active_names(&self.dataplane).is_empty();
            // The most preferred tier that has dormant cold standbys.
            let wake_tier = self.services[s]
                .backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.cold == Some(ColdState::Dormant))
                .map(|(i, _)| self.services[s].plan.backends[i].spec.tier)
                .min();
            for b in 0..self.services[s].backends.len() {
                let service = &mut self.services[s];
                let plan = &service.plan.backends[b];
                let runtime = &mut service.backends[b];
                match runtime.cold {
                    Some(ColdState::Failed { retry_at }) if retry_at <= now => {
                        runtime.cold = Some(ColdState::Dormant);
                        shown = true;
                    }
                    Some(ColdState::Dormant)
                        if nothing_serves && Some(plan.spec.tier) == wake_tier =>
                    {
                        let cold = plan.cold.as_ref().expect("cold backends have a plan");
                        let deadline = now + cold.timeout;
                        runtime.cold = Some(ColdState::Starting {
                            since: now,
                            deadline,
                        });
                        changed = true;
                        warn!(service = %service.name, backend = %runtime.name, timeout = ?cold.timeout, "no backend takes new flows: starting cold standby");
                        self.events.publish(
                            Event::new(
                                EventKind::Operation,
                                format!("{}: starting cold standby {}", service.name, runtime.name),
                            )
                            .service(&service.name)
                            .backend(&runtime.name),
                        );
                        if let Some(command) = &cold.command {
                            let port = plan.spec.port.unwrap_or(service.plan.spec.port);
                            spawn_start(
                                crate::util::process::substitute(command, plan.spec.addr, port),
                                cold.timeout,
                                service.name.clone(),
                                runtime.name.clone(),
                            );
                        }
                    }
                    Some(ColdState::Starting { since, .. }) if runtime.health.healthy() => {
                        runtime.cold = Some(ColdState::Started);
                        shown = true;
                        info!(service = %service.name, backend = %runtime.name, after = ?since.elapsed(), "cold standby is up");
                    }
                    Some(ColdState::Starting { deadline, .. }) if deadline <= now => {
                        let retry = plan.cold.as_ref().expect("cold backends have a plan").retry;
                        let retry_at = now + retry;
                        runtime.cold = Some(ColdState::Failed { retry_at });
                        changed = true;
                        let last = runtime
                            .stats
                            .last_error
                            .clone()
                            .unwrap_or_else(|| "no probe passed".into());
                        warn!(service = %service.name, backend = %runtime.name, reason = %last, "cold standby did not come up in time; it will be retried later");
                        self.events.publish(
                            Event::new(
                                EventKind::Operation,
                                format!(
                                    "{}: cold standby {} did not come up",
                                    service.name, runtime.name
                                ),
                            )
                            .service(&service.name)
                            .backend(&runtime.name)
                            .details(serde_json::json!({"reason": last})),
                        );
                    }
                    _ => {}
                }
            }
        }
        if changed || shown {
            self.refresh_telemetry();
        }
        changed
    }
}

/// Runs a cold standby's start command in the background (its process
/// group killed at the timeout); the outcome is logged (the probes decide
/// when it serves).
fn spawn_start(args: Vec<String>, timeout: std::time::Duration, service: String, backend: String) {
    tokio::spawn(async move {
        match crate::util::process::run(&args, &[], None, timeout).await {
            Ok(()) => info!(service, backend, "start command finished"),
            Err(err) => {
                warn!(service, backend, cause = %crate::util::chain(&err), "start command failed")
            }
        }
    });
}
