//! `[routing]` in the agent: after anything that can change who takes new
//! flows, every VIP's announcement is recomputed (`decide::announce`) and
//! the difference written (`routing::Announcer`); each change is logged
//! and journaled. A write that failed is tried again after [`RETRY_FIRST`],
//! then twice as long each time up to [`RETRY_MOST`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{Agent, op_error::OpError};
use crate::{
    config::RoutingConfig,
    decide::announce::{Announcement, ServiceUse, Usable, announcements},
    events::{Event, EventKind},
    outputs::telemetry::AnnouncementView,
    routing::{Announcer, Applied, RoutingError},
};

/// How often the announcements are looked at while a service waits for its
/// first answered probe.
const AWAITING_EVERY: Duration = Duration::from_millis(100);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MOST: Duration = Duration::from_secs(30);

/// The agent's announcer, whether the host is drained, and when a failed
/// write may be tried again.
pub(super) struct Routing {
    announcer: Announcer,
    /// `failover host drain`: every VIP withdrawn (its file exists).
    drained: bool,
    retry_at: Option<Instant>,
    /// The wait before the next retry (after a failure).
    backoff: Duration,
    /// A service could serve but waits for its first answered probe: the
    /// announcements are looked at again from this instant (every
    /// [`AWAITING_EVERY`] at most).
    awaiting_until: Option<Instant>,
    /// Backend endpoints that answered a probe of this agent (kept across
    /// reloads, which rebuild the probe statistics).
    answered: BTreeSet<(IpAddr, Option<u16>)>,
    /// What the last failed write tried to announce: while backing off,
    /// only a different wish tries again early.
    attempted: Option<BTreeMap<IpAddr, bool>>,
}

impl Routing {
    pub(super) fn start(config: &RoutingConfig) -> Result<Self, RoutingError> {
        let announcer = Announcer::start(config)?;
        info!(device = %config.device, table = config.table, "announcing VIPs through the routing daemon: a route per VIP this host can serve, to a device that lives as long as the agent");
        let drained = config
            .drain_file
            .try_exists()
            .map_err(|source| RoutingError::DrainFile {
                path: config.drain_file.clone(),
                source,
            })?;
        if drained {
            warn!(file = %config.drain_file.display(), "the host is drained (`failover host drain`): announcing nothing until `failover host undrain`");
        }
        Ok(Self {
            announcer,
            drained,
            retry_at: None,
            backoff: RETRY_FIRST,
            awaiting_until: None,
            answered: BTreeSet::new(),
            attempted: None,
        })
    }
}

impl Agent {
    /// Whether `failover host drain` is in force.
    pub(super) fn host_drained(&self) -> bool {
        self.routing.as_ref().is_some_and(|r| r.drained)
    }

    /// `failover host drain` / `undrain`: records it in the drain file
    /// (first: a restart must find it), then withdraws or announces.
    pub(super) fn host_drain(&mut self, drain: bool) -> Result<serde_json::Value, OpError> {
        let routing = self.routing.as_mut().ok_or(OpError::NoRouting)?;
        let path = routing.announcer.config().drain_file.clone();
        let written = if drain {
            path.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    std::fs::write(
                        &path,
                        "drained by `failover host drain`; `failover host undrain` ends it\n",
                    )
                })
        } else {
            match std::fs::remove_file(&path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            }
        };
        written.map_err(|source| OpError::DrainFile {
            path: path.clone(),
            source,
        })?;
        let changed = routing.drained != drain;
        routing.drained = drain;
        // Written now, whatever the record says.
        routing.retry_at = Some(Instant::now());
        if changed {
            let what = if drain {
                "host drained: every VIP withdrawn"
            } else {
                "host undrained: announcing what it can serve"
            };
            info!(file = %path.display(), "{what}");
            self.events
                .publish(Event::new(EventKind::Operation, what).details(
                serde_json::json!({"operation": if drain { "host drain" } else { "host undrain" }}),
            ));
        }
        self.announce();
        let announcements = self.announcement_views();
        if drain {
            let still: Vec<&str> = announcements
                .iter()
                .filter(|a| a.announced)
                .map(|a| a.vip.as_str())
                .collect();
            if !still.is_empty() {
                return Err(OpError::StillAnnounced(still.join(", ")));
            }
        }
        Ok(serde_json::json!({"host_drained": drain, "announcements": announcements}))
    }

    /// Whether the announcements may change without anything having moved:
    /// a failed write is due to be tried again, or a service waits for its
    /// first answered probe.
    pub(super) fn announce_due(&self) -> bool {
        let now = Instant::now();
        self.routing.as_ref().is_some_and(|r| {
            r.awaiting_until.is_some_and(|at| now >= at) || r.retry_at.is_some_and(|at| now >= at)
        })
    }

    /// Withdraws every VIP (the agent stops; the device would take the
    /// routes with it anyway, this says so in the journal first).
    pub(super) fn withdraw_all(&mut self) {
        let Some(routing) = self.routing.as_mut() else {
            return;
        };
        let wanted = routing
            .announcer
            .current()
            .keys()
            .map(|vip| {
                (
                    *vip,
                    Announcement {
                        announced: false,
                        why: "the agent is stopping".into(),
                    },
                )
            })
            .collect();
        let applied = routing.announcer.apply(wanted);
        self.report_announcements(applied);
    }

    /// Announces the VIPs this host can serve and withdraws the others.
    pub(super) fn announce(&mut self) {
        let Some(routing) = self.routing.as_mut() else {
            return;
        };
        // A service counts once a backend taking its new flows has answered
        // a probe since the agent started: health adopted from pins (or
        // assumed at a first start) is not proof that this host reaches it.
        // A VIP announced already stays so (a reload rebuilds the probe
        // statistics, not the reachability).
        let announced: BTreeSet<IpAddr> = routing
            .announcer
            .current()
            .iter()
            .filter(|(_, a)| a.announced)
            .map(|(vip, _)| *vip)
            .collect();
        let mut awaiting = false;
        // At start, the flows the other edge hosts pinned must be here
        // before ECMP brings any of them (a VIP already announced stays).
        let peers_caught_up = self.flow_sync.as_ref().is_none_or(|s| s.caught_up());
        let uses: Vec<ServiceUse> = self
            .services
            .iter()
            .map(|s| {
                let taking = self
                    .dataplane
                    .service(s.id)
                    .map(|entry| entry.new_flows_to())
                    .unwrap_or_default();
                for (b, backend) in s.backends.iter().enumerate() {
                    if backend.stats.ok_total > 0 {
                        let spec = &s.plan.backends[b].spec;
                        routing.answered.insert((spec.addr, spec.port));
                    }
                }
                let answered = s.backends.iter().enumerate().any(|(b, backend)| {
                    let spec = &s.plan.backends[b].spec;
                    taking.contains(&backend.id)
                        && routing.answered.contains(&(spec.addr, spec.port))
                });
                let state = if taking.is_empty() {
                    Usable::No
                } else if announced.contains(&s.plan.spec.vip) {
                    Usable::Yes
                } else if answered && !peers_caught_up {
                    awaiting = true;
                    Usable::AwaitingPeers
                } else if answered {
                    Usable::Yes
                } else {
                    awaiting = true;
                    Usable::Unproven
                };
                ServiceUse {
                    name: s.name.clone(),
                    vip: s.plan.spec.vip,
                    state,
                }
            })
            .collect();
        let now = Instant::now();
        routing.awaiting_until = awaiting.then(|| now + AWAITING_EVERY);
        let wanted = announcements(
            &uses,
            routing.announcer.config().when_unusable,
            routing.drained,
        );
        if &wanted == routing.announcer.current() && routing.retry_at.is_none() {
            return;
        }
        // Backing off after a failed write: only a wish different from the
        // one that failed tries again early.
        let wish: BTreeMap<IpAddr, bool> =
            wanted.iter().map(|(vip, a)| (*vip, a.announced)).collect();
        if routing.retry_at.is_some_and(|at| now < at) && routing.attempted.as_ref() == Some(&wish)
        {
            return;
        }
        let applied = routing.announcer.apply(wanted);
        if applied.error.is_some() {
            routing.retry_at = Some(now + routing.backoff);
            routing.backoff = (routing.backoff * 2).min(RETRY_MOST);
            routing.attempted = Some(wish);
        } else {
            routing.retry_at = None;
            routing.backoff = RETRY_FIRST;
            routing.attempted = None;
        }
        self.report_announcements(applied);
    }

    /// Logs, journals and shows what [`Announcer::apply`] did.
    fn report_announcements(&mut self, applied: Applied) {
        if let Some(err) = &applied.error {
            warn!(cause = %crate::util::chain(err), "announcements not written (tried again after 1 s, then twice as long each time, up to 30 s, while the agent runs)");
        }
        for change in applied.changed {
            let (kind, verb) = if change.announced {
                (EventKind::VipAnnounced, "announced")
            } else {
                (EventKind::VipWithdrawn, "withdrawn")
            };
            if change.announced {
                info!(vip = %change.vip, why = %change.why, "VIP announced");
            } else {
                warn!(vip = %change.vip, why = %change.why, "VIP withdrawn");
            }
            self.events.publish(
                Event::new(kind, format!("{} {verb}: {}", change.vip, change.why))
                    .details(serde_json::json!({"vip": change.vip.to_string(), "why": change.why})),
            );
        }
        let views = self.announcement_views();
        self.telemetry
            .update(|snapshot| snapshot.announcements = views);
    }

    /// Every VIP's announcement as last written, as status shows it.
    fn announcement_views(&self) -> Vec<AnnouncementView> {
        self.routing.as_ref().map_or_else(Vec::new, |routing| {
            routing
                .announcer
                .current()
                .iter()
                .map(|(vip, a)| AnnouncementView {
                    vip: vip.to_string(),
                    announced: a.announced,
                    why: a.why.clone(),
                })
                .collect()
        })
    }
}
