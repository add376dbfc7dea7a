//! Operator requests from the control socket and signals: status, drain,
//! undrain, switchover, failback, maintenance, reload. Every mutating
//! request supports a dry run that reports what would change.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::info;

use super::{
    Agent,
    op_error::{OpError, ReloadError},
    reload_diff::ReloadDiff,
    runtime::Cause,
};
use crate::{
    control::{BackendStatus, Request, Response, ServiceStatus, StatusAnswer},
    decide::policy::{Change, ServicePolicy},
    events::{Event, EventKind},
};

impl Agent {
    pub(super) async fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Status {} => serde_json::to_value(self.status()).map_err(OpError::Encode),
            Request::Drain {
                backend,
                deadline_s,
                dry_run,
            } => match deadline_s.map(drain_deadline).transpose() {
                Err(err) => Err(err),
                Ok(deadline) => self.operate(&backend, dry_run, "drain", |policy, b, now| {
                    policy.drain(b, deadline, now)
                }),
            },
            Request::Undrain { backend, dry_run } => {
                self.operate(&backend, dry_run, "undrain", |policy, b, now| {
                    Ok(policy.restore(b, now))
                })
            }
            Request::Maintenance {
                backend,
                on,
                dry_run,
            } => {
                if on {
                    self.operate(&backend, dry_run, "maintenance on", |policy, b, now| {
                        policy.maintenance(b, now)
                    })
                } else {
                    self.operate(&backend, dry_run, "maintenance off", |policy, b, now| {
                        Ok(policy.restore(b, now))
                    })
                }
            }
            Request::Switchover {
                service,
                to: Some(to),
                dry_run,
            } => {
                let name = format!("{service}/{to}");
                self.operate(&name, dry_run, "switchover", |policy, b, now| {
                    policy.switchover(b, now)
                })
            }
            Request::Switchover {
                service,
                to: None,
                dry_run,
            } => self.release_switchover(&service, dry_run),
            Request::Failback { service, dry_run } => self.failback(service.as_deref(), dry_run),
            Request::HostDrain {} => self.host_drain(true),
            Request::HostUndrain {} => self.host_drain(false),
            Request::Reload { dry_run } => self
                .reload(dry_run)
                .await
                .map(|diff| diff.to_json())
                .map_err(OpError::from),
        };
        match result {
            Ok(value) => Response::ok(value),
            Err(err) => Response::error(crate::util::chain(&err).to_string()),
        }
    }

    fn service_index(&self, name: &str) -> Result<usize, OpError> {
        self.services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| OpError::NoService(name.to_owned()))
    }

    /// Finds `service/backend`, or `backend` when unique.
    fn locate(&self, name: &str) -> Result<(usize, usize), OpError> {
        if let Some((service, backend)) = name.split_once('/') {
            let s = self
                .services
                .iter()
                .position(|s| s.name == service)
                .ok_or_else(|| OpError::NoService(service.to_owned()))?;
            let b = self.services[s].backend_index(backend).ok_or_else(|| {
                OpError::NoBackendInService {
                    service: service.to_owned(),
                    backend: backend.to_owned(),
                }
            })?;
            return Ok((s, b));
        }
        let found: Vec<(usize, usize)> = self
            .services
            .iter()
            .enumerate()
            .filter_map(|(s, service)| service.backend_index(name).map(|b| (s, b)))
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(OpError::NoBackend(name.to_owned())),
            _ => Err(OpError::AmbiguousBackend(name.to_owned())),
        }
    }

    /// Runs a policy operation on one backend (on a copy for a dry run) and
    /// applies the resulting changes.
    fn operate(
        &mut self,
        name: &str,
        dry_run: bool,
        what: &'static str,
        op: impl FnOnce(
            &mut ServicePolicy,
            usize,
            Instant,
        ) -> Result<Vec<Change>, crate::decide::policy::Refused>,
    ) -> Result<Value, OpError> {
        let (s, b) = self.locate(name)?;
        let now = Instant::now();
        let service = &self.services[s];
        let before = service.active_names(&self.dataplane);
        let mut policy = service.policy.clone();
        let changes = op(&mut policy, b, now).map_err(|reason| OpError::Refused {
            what,
            name: name.to_owned(),
            reason,
        })?;
        let active_after = service.predicted_names(&self.dataplane, &policy, now);
        let described = describe_changes(service, &changes);
        let report = json!({
            "operation": what,
            "service": service.name,
            "backend": service.backends[b].name,
            "dry_run": dry_run,
            "changes": described,
            "new_flows_before": before,
            "new_flows_after": active_after,
        });
        if dry_run {
            return Ok(report);
        }
        self.services[s].policy = policy;
        self.apply(s, before, changes, Cause::Operator(what));
        info!(operation = what, backend = name, "operator request applied");
        self.events.publish(
            Event::new(EventKind::Operation, format!("{what} {name}"))
                .service(&self.services[s].name)
                .backend(&self.services[s].backends[b].name)
                .details(report.clone()),
        );
        self.refresh_telemetry();
        Ok(report)
    }

    /// Ends a service's switchover: tiers and health decide again.
    fn release_switchover(&mut self, service: &str, dry_run: bool) -> Result<Value, OpError> {
        let s = self.service_index(service)?;
        let now = Instant::now();
        let before = self.services[s].active_names(&self.dataplane);
        let mut policy = self.services[s].policy.clone();
        let target = policy.switched_to();
        let changes = policy.release_switchover(now);
        let runtime = &self.services[s];
        let report = json!({
            "operation": "switchover release",
            "service": runtime.name,
            "released": target.map(|b| runtime.backends[b].name.clone()),
            "dry_run": dry_run,
            "changes": describe_changes(runtime, &changes),
            "new_flows_before": before,
            "new_flows_after": runtime.predicted_names(&self.dataplane, &policy, now),
        });
        if dry_run {
            return Ok(report);
        }
        self.services[s].policy = policy;
        self.apply(s, before, changes, Cause::Operator("switchover released"));
        self.events.publish(
            Event::new(
                EventKind::Operation,
                format!("switchover of {service} released"),
            )
            .service(service)
            .details(report.clone()),
        );
        self.refresh_telemetry();
        Ok(report)
    }

    /// Releases failback holds of one service (or all).
    pub(super) fn failback(
        &mut self,
        service: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, OpError> {
        let targets: Vec<usize> = match service {
            Some(name) => vec![self.service_index(name)?],
            None => (0..self.services.len()).collect(),
        };
        let now = Instant::now();
        let mut reports = Vec::new();
        for s in targets {
            let before = self.services[s].active_names(&self.dataplane);
            let mut policy = self.services[s].policy.clone();
            let changes = policy.failback_now(now);
            reports.push(json!({
                "service": self.services[s].name,
                "changes": describe_changes(&self.services[s], &changes),
                "new_flows_before": before,
            }));
            if !dry_run {
                self.services[s].policy = policy;
                self.apply(s, before, changes, Cause::Operator("operator failback"));
            }
        }
        if !dry_run {
            self.refresh_telemetry();
        }
        Ok(json!({"operation": "failback", "dry_run": dry_run, "services": reports}))
    }

    /// Re-reads the configuration, validates it fully, and applies only the
    /// difference. Unchanged services keep their state and flows.
    pub(super) async fn reload(&mut self, dry_run: bool) -> Result<ReloadDiff, ReloadError> {
        let config = self.source.load().map_err(|source| ReloadError::Config {
            path: self.source.path.clone(),
            source,
        })?;
        if config.pin_dir != self.config.pin_dir {
            return Err(ReloadError::PinDirChanged);
        }
        if config.conntrack.max_flows != self.config.conntrack.max_flows {
            return Err(ReloadError::MaxFlowsChanged {
                from: self.config.conntrack.max_flows,
                to: config.conntrack.max_flows,
            });
        }
        if config.control_socket != self.config.control_socket
            || config.metrics_listen != self.config.metrics_listen
            || config.journal != self.config.journal
            || config.alerts != self.config.alerts
            || config.routing != self.config.routing
            || config.sync != self.config.sync
        {
            return Err(ReloadError::RestartOnly);
        }
        let diff = ReloadDiff::between(&self.config, &config);
        // Everything that can be checked is checked before the first write.
        config
            .capacity(Some(&self.config))
            .map_err(ReloadError::Capacity)?;
        for interface in &diff.interfaces_added {
            crate::dataplane::interface_index(interface).map_err(|source| {
                ReloadError::Interface {
                    interface: interface.clone(),
                    source,
                }
            })?;
        }
        if dry_run {
            return Ok(diff);
        }
        if diff.is_empty() {
            // The host's addresses may have changed since: a VIP added to it.
            super::start::let_local_vip_replies_through(&config);
            return Ok(diff);
        }

        let snapshot = self.dataplane.snapshot();
        let previous = std::mem::take(&mut self.services);
        let applied = self
            .apply_services(&config, &previous)
            .and_then(|services| {
                // Last: a failure before leaves the old lifetimes with the old maps.
                if config.conntrack != self.config.conntrack {
                    self.dataplane
                        .set_flow_settings(&config.conntrack.settings())?;
                    if let Some(sync) = &self.flow_sync {
                        sync.set_settings(config.conntrack.settings());
                    }
                    info!(settings = ?config.conntrack, "flow lifetimes and flood guard changed");
                }
                Ok(services)
            });
        match applied {
            Ok(services) => {
                self.services = services;
                self.settle();
            }
            Err(err) => {
                // The maps may be half-changed: put back exactly what they
                // had (states included), and the runtimes that go with it.
                let restored = self.dataplane.restore(snapshot);
                self.services = previous;
                if let Err(restore) = restored {
                    tracing::error!(cause = %crate::util::chain(&restore), "restoring the maps after a failed reload failed; resyncing every service");
                    self.mark_all_dirty();
                }
                return Err(ReloadError::Apply(err));
            }
        }
        for (interface, mode) in &config.interfaces {
            if !self
                .config
                .interfaces
                .iter()
                .any(|(name, _)| name == interface)
                && let Err(err) = self.dataplane.attach_pinned(interface, *mode)
            {
                tracing::warn!(interface, cause = %crate::util::chain(&err), "attaching a new interface failed");
            }
        }
        for (interface, _) in &self.config.interfaces {
            if !config.interfaces.iter().any(|(name, _)| name == interface) {
                let _ = std::fs::remove_file(config.pin_dir.join(format!("link_{interface}")));
            }
        }
        super::start::let_local_vip_replies_through(&config);
        self.config = config;
        self.restart_probes().await;
        self.refresh_telemetry();
        self.events.publish(
            Event::new(EventKind::Operation, format!("reload: {diff}")).details(diff.to_json()),
        );
        Ok(diff)
    }

    fn status(&self) -> StatusAnswer {
        let counted = self.flows.latest();
        let flows = counted.by_backend;
        let snapshot = self.telemetry.snapshot();
        let services = snapshot
            .services
            .iter()
            .map(|service| ServiceStatus {
                name: service.name.clone(),
                id: service.id,
                vip: service.vip.clone(),
                port: service.port,
                protocol: service.protocol.clone(),
                new_flows_to: service.active.clone(),
                switchover: service.switched_to.clone(),
                backends: service
                    .backends
                    .iter()
                    .map(|b| {
                        let traffic = self.dataplane.counters().backend(b.id).ok();
                        BackendStatus {
                            view: b.clone(),
                            active_flows: flows.get(&b.id).copied().unwrap_or(0),
                            packets_to: traffic.map(|t| t.to_backend.packets),
                            packets_from: traffic.map(|t| t.from_backend.packets),
                        }
                    })
                    .collect(),
            })
            .collect();
        StatusAnswer {
            services,
            totals: snapshot.totals,
            uptime_s: snapshot.started_seconds_ago,
            egress: snapshot.egress,
            active_flow_idle_s: super::flows::ACTIVE_FLOW_IDLE.as_secs(),
            active_flows_counted_s_ago: counted.counted_at.map(|at| at.elapsed().as_secs_f64()),
            flow_entries: counted.entries,
            flows_reclaimed_total: counted.reclaimed_total,
            announcements: snapshot.announcements,
            host_drained: self.host_drained(),
            sync: snapshot.sync,
            recent_events: snapshot.recent_events.into(),
            page_listen: self.config.metrics_listen.map(|listen| listen.to_string()),
        }
    }
}

/// A drain deadline from a control request, within its bounds.
fn drain_deadline(seconds: f64) -> Result<Duration, OpError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| crate::config::limits::DRAIN_DEADLINE.contains(d))
        .ok_or_else(|| OpError::DeadlineOutOfBounds {
            seconds,
            bounds: crate::config::limits::describe(&crate::config::limits::DRAIN_DEADLINE),
        })
}

fn describe_changes(service: &super::runtime::ServiceRuntime, changes: &[Change]) -> Vec<Value> {
    changes
        .iter()
        .map(|c| json!({"backend": service.backends[c.backend].name, "state": c.state.to_string()}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_deadlines_out_of_bounds_are_refused_not_clamped() {
        assert_eq!(drain_deadline(5.0).unwrap(), Duration::from_secs(5));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12] {
            let err = drain_deadline(bad).unwrap_err();
            assert!(
                matches!(err, OpError::DeadlineOutOfBounds { .. }),
                "{bad}: {err}"
            );
        }
    }
}
