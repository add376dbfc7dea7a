//! Telling what changed: who takes new flows now (logs, events, totals)
//! and the shared view status and metrics read.

use tracing::warn;

use super::{Agent, runtime::Cause};
use crate::events::{Event, EventKind};

impl Agent {
    /// Logs and publishes what changed for new flows (`before`: who took
    /// them before the decision), once the maps are written.
    pub(super) fn report_changes(
        &mut self,
        s: usize,
        before: Vec<String>,
        changes: &[crate::decide::policy::Change],
        cause: Cause,
        decided_to_map: Option<std::time::Duration>,
    ) {
        if changes.is_empty() {
            return;
        }
        let service = &self.services[s];
        let after = service.active_names(&self.dataplane);
        if before == after {
            return;
        }
        let gap = match cause {
            Cause::Failed {
                first_failure: Some(at),
                ..
            } => Some(at.elapsed()),
            _ => None,
        };
        let to = if after.is_empty() {
            "nothing (no healthy backend)".to_owned()
        } else {
            after.join(",")
        };
        warn!(
            service = %service.name,
            from = %before.join(","),
            to = %to,
            cause = cause.describe(),
            first_failure_to_map_update = ?gap,
            decisive_result_to_map_update = ?decided_to_map,
            "new flows switched"
        );
        let kind = match cause {
            Cause::Failed { .. } => EventKind::Failover,
            Cause::Operator(_) => EventKind::Operation,
            Cause::Recovered | Cause::Timer => EventKind::Failback,
        };
        match kind {
            EventKind::Failover => {
                self.totals.failovers_total += 1;
                if let Some(gap) = gap {
                    self.totals.last_failover_gap_seconds = Some(gap.as_secs_f64());
                }
            }
            EventKind::Failback => self.totals.failbacks_total += 1,
            _ => {}
        }
        let planned = matches!(cause, Cause::Operator(_));
        self.totals
            .count_switch(&service.name, planned, cause.describe());
        let details = serde_json::json!({
            "from": before,
            "to": after,
            "cause": cause.describe(),
            "first_failure_to_map_update_ms": gap.map(|g| g.as_secs_f64() * 1000.0),
            "decisive_result_to_map_update_us": decided_to_map.map(|d| d.as_secs_f64() * 1e6),
        });
        let message = format!("{}: new flows {} -> {}", service.name, before.join(","), to);
        self.events.publish(
            Event::new(kind, message)
                .service(&service.name)
                .details(details.clone()),
        );
        if after.is_empty() {
            self.events.publish(
                Event::new(
                    EventKind::QuorumLost,
                    format!("{}: no backend can take new flows", service.name),
                )
                .service(&service.name)
                .details(details),
            );
        }
    }

    /// Rebuilds the shared view from the runtime state.
    pub(super) fn refresh_telemetry(&self) {
        let views = self
            .services
            .iter()
            .map(|s| s.view(&self.dataplane))
            .collect();
        let totals = self.totals.clone();
        self.telemetry.update(|snapshot| {
            snapshot.services = views;
            snapshot.totals = totals;
        });
    }

    /// Rebuilds one service's part of the shared view (and the totals): a
    /// full refresh reads every service's maps, too much per health flip
    /// with a thousand services.
    pub(super) fn refresh_service_telemetry(&self, s: usize) {
        let view = self.services[s].view(&self.dataplane);
        let totals = self.totals.clone();
        let mut in_place = false;
        self.telemetry.update(|snapshot| {
            if let Some(slot) = snapshot.services.get_mut(s) {
                *slot = view;
                in_place = true;
            }
            snapshot.totals = totals;
        });
        if !in_place {
            self.refresh_telemetry();
        }
    }
}
