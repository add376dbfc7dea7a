//! Writing a peer's pinned flows into this host's flow table, so that a
//! flow ECMP moves here continues on its backend. An entry this host
//! carries itself (seen here) always wins; a copy learned earlier is
//! refreshed. A copy is written as never seen here (`last_seen_ns` 0): the
//! data path gives it its full lifetime at its first packet, the flow
//! counts as carried here only from then, and it is not sent back.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use failover_common::{
    Backend, Flow, PROTO_TCP, Service, ServiceKey, Settings, flow_state, usable_for_established,
};

use super::{
    maps::LocalMaps,
    pinned::{endpoint, service_key},
    wire::{Endpoint, PinnedFlow},
};
use crate::dataplane::error::DataplaneError;

/// What became of one pinned flow from a peer (each counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Written: this host had no live entry for the flow.
    Learned,
    /// A copy learned earlier, refreshed (or already up to date).
    Refreshed,
    /// This host's own (idle) entry of a flow that closed on the peer,
    /// closed here too.
    Closed,
    /// This host carries the flow itself: its own entry stays.
    KeptLocal,
    /// Not written: the copies learned from peers fill their share of the
    /// flow table.
    OverBudget,
    /// No such service here.
    UnknownService,
    /// The service has no such backend here, or it may not keep flows.
    UnknownBackend,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Learned => "learned",
            Self::Refreshed => "refreshed",
            Self::Closed => "closed",
            Self::KeptLocal => "kept_local",
            Self::OverBudget => "over_budget",
            Self::UnknownService => "unknown_service",
            Self::UnknownBackend => "unknown_backend",
        }
    }
}

/// A local backend a peer's flow names.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub service_id: u32,
    pub backend_id: u32,
    pub generation: u32,
}

/// The entry to write for `incoming` over `existing` (`None`: leave it).
/// Its lifetime is what the peer had left, at most this host's own for the
/// flow's protocol and state.
pub fn learn(
    existing: Option<&Flow>,
    incoming: &PinnedFlow,
    target: Target,
    now: u64,
    settings: &Settings,
) -> (Outcome, Option<Flow>) {
    let lifetime = lifetime_ns(settings, incoming.key.proto, incoming.state);
    let expires = now.saturating_add((u64::from(incoming.remaining_ms) * 1_000_000).min(lifetime));
    let closing = incoming.state == flow_state::CLOSING;
    let live = existing.filter(|e| now <= e.expires_ns);
    let same_backend =
        |e: &Flow| e.backend_id == target.backend_id && e.backend_generation == target.generation;
    match live {
        // This host carries the flow: its entry stays, but a close seen on
        // the other host is a fact of the connection (it moved there and
        // ended): this idle entry ends too, instead of living on open.
        Some(entry) if entry.last_seen_ns != 0 => {
            if closing && same_backend(entry) && entry.state == flow_state::OPEN {
                let closed = Flow {
                    state: flow_state::CLOSING,
                    expires_ns: entry.expires_ns.min(expires),
                    ..*entry
                };
                return (Outcome::Closed, Some(closed));
            }
            (Outcome::KeptLocal, None)
        }
        Some(entry) if same_backend(entry) => {
            // A closed copy stays closed (a late datagram may still say open).
            if entry.state == flow_state::CLOSING {
                return (Outcome::Refreshed, None);
            }
            // An open copy keeps the later expiry; a close takes the peer's.
            let expires_ns = if closing {
                expires
            } else {
                entry.expires_ns.max(expires)
            };
            let unchanged = entry.state == incoming.state
                && expires_ns.abs_diff(entry.expires_ns) < REFRESH_STEP_NS;
            if unchanged {
                return (Outcome::Refreshed, None);
            }
            let refreshed = Flow {
                state: incoming.state,
                expires_ns,
                ..*entry
            };
            (Outcome::Refreshed, Some(refreshed))
        }
        // A copy of another backend takes the peer's word as it is.
        _ => {
            let copy = Flow {
                backend_id: target.backend_id,
                service_id: target.service_id,
                backend_generation: target.generation,
                state: incoming.state,
                last_seen_ns: 0,
                expires_ns: expires,
                ..Flow::default()
            };
            let outcome = if live.is_some() {
                Outcome::Refreshed
            } else {
                Outcome::Learned
            };
            (outcome, Some(copy))
        }
    }
}

/// A copy is written again only when its expiry moves by this much (each
/// round would otherwise rewrite every copy).
const REFRESH_STEP_NS: u64 = 1_000_000_000;

fn lifetime_ns(settings: &Settings, proto: u8, state: u8) -> u64 {
    let or = |value: u64, default: u64| if value == 0 { default } else { value };
    if proto != PROTO_TCP {
        or(settings.udp_ns, failover_common::DEFAULT_UDP_NS)
    } else if state == flow_state::CLOSING {
        or(
            settings.tcp_closing_ns,
            failover_common::DEFAULT_TCP_CLOSING_NS,
        )
    } else {
        or(settings.tcp_open_ns, failover_common::DEFAULT_TCP_OPEN_NS)
    }
}

/// The local services and backends by what peers name them with, read
/// again when older than [`FRESH`] (a reload may have changed them).
pub struct LocalIndex {
    services: HashMap<ServiceKey, Service>,
    backends: HashMap<(u32, Endpoint), (u32, Backend)>,
    read_at: Option<Instant>,
}

const FRESH: Duration = Duration::from_millis(200);

impl LocalIndex {
    pub fn new() -> Self {
        Self {
            services: HashMap::new(),
            backends: HashMap::new(),
            read_at: None,
        }
    }

    fn refresh(&mut self, maps: &LocalMaps) -> Result<(), DataplaneError> {
        if self.read_at.is_some_and(|at| at.elapsed() < FRESH) {
            return Ok(());
        }
        self.services = maps.services.all()?.into_iter().collect();
        let ports: HashMap<u32, u16> = self
            .services
            .iter()
            .map(|(key, service)| (service.id, key.port_be))
            .collect();
        self.backends = maps
            .backends
            .in_use()?
            .into_iter()
            .filter_map(|(id, backend)| {
                let port = *ports.get(&backend.service_id)?;
                Some((
                    (backend.service_id, endpoint(&backend, port)),
                    (id, backend),
                ))
            })
            .collect();
        self.read_at = Some(Instant::now());
        Ok(())
    }

    /// The local backend `flow` names, or why there is none.
    fn target(&self, flow: &PinnedFlow) -> Result<Target, Outcome> {
        let service = self
            .services
            .get(&service_key(&flow.key))
            .ok_or(Outcome::UnknownService)?;
        let (backend_id, backend) = self
            .backends
            .get(&(service.id, flow.backend))
            .filter(|(_, b)| usable_for_established(b.state))
            .ok_or(Outcome::UnknownBackend)?;
        Ok(Target {
            service_id: service.id,
            backend_id: *backend_id,
            generation: backend.generation,
        })
    }
}

/// Writes a datagram's flows; returns what became of each.
pub fn apply(
    maps: &mut LocalMaps,
    index: &mut LocalIndex,
    flows: &[PinnedFlow],
    settings: &Settings,
    copies_left: &mut usize,
) -> Result<Vec<Outcome>, DataplaneError> {
    index.refresh(maps)?;
    let mut outcomes = Vec::with_capacity(flows.len());
    for incoming in flows {
        let target = match index.target(incoming) {
            Ok(target) => target,
            Err(outcome) => {
                outcomes.push(outcome);
                continue;
            }
        };
        let now = crate::dataplane::now_ns();
        let existing = maps.flows.get(&incoming.key)?;
        let (outcome, write) = learn(existing.as_ref(), incoming, target, now, settings);
        if outcome == Outcome::Learned {
            if *copies_left == 0 {
                outcomes.push(Outcome::OverBudget);
                continue;
            }
            *copies_left -= 1;
        }
        // Absent a moment ago: written only if still absent (the data
        // path's own entry wins that race). Otherwise the entry is replaced
        // whole: a packet handled between the read and this write loses
        // its refresh of the entry (it is refreshed again at the next one).
        let outcome = match write {
            Some(flow) if existing.is_none() => {
                if maps.flows.put(&incoming.key, &flow, true)? {
                    outcome
                } else {
                    Outcome::KeptLocal
                }
            }
            Some(flow) => {
                maps.flows.put(&incoming.key, &flow, false)?;
                outcome
            }
            None => outcome,
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use failover_common::PROTO_UDP;

    use super::*;

    const NOW: u64 = 10_000_000_000;

    fn incoming(state: u8, remaining_ms: u32) -> PinnedFlow {
        super::super::wire::sample_flow(40_000, state, remaining_ms)
    }

    const TARGET: Target = Target {
        service_id: 1,
        backend_id: 5,
        generation: 2,
    };

    fn entry(last_seen_ns: u64, expires_ns: u64) -> Flow {
        Flow {
            backend_id: 5,
            service_id: 1,
            backend_generation: 2,
            state: flow_state::OPEN,
            last_seen_ns,
            expires_ns,
            ..Flow::default()
        }
    }

    #[test]
    fn a_flow_unknown_here_is_learned_as_never_seen_with_the_peers_lifetime() {
        let (outcome, flow) = learn(
            None,
            &incoming(flow_state::OPEN, 2_000),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!(outcome, Outcome::Learned);
        let flow = flow.unwrap();
        assert_eq!(
            (flow.backend_id, flow.service_id, flow.backend_generation),
            (5, 1, 2)
        );
        assert_eq!(flow.last_seen_ns, 0);
        assert_eq!(flow.expires_ns, NOW + 2_000_000_000);
        // An expired entry is no entry.
        let (outcome, _) = learn(
            Some(&entry(5, NOW - 1)),
            &incoming(flow_state::OPEN, 1),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!(outcome, Outcome::Learned);
    }

    #[test]
    fn a_flow_this_host_carries_keeps_its_own_entry_until_it_closes_on_the_peer() {
        let own = entry(NOW - 5, NOW + 60_000_000_000);
        let (outcome, write) = learn(
            Some(&own),
            &incoming(flow_state::OPEN, 1),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!((outcome, write), (Outcome::KeptLocal, None));
        let (outcome, write) = learn(
            Some(&own),
            &incoming(flow_state::CLOSING, 2_000),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!(outcome, Outcome::Closed);
        let closed = write.unwrap();
        assert_eq!(
            (closed.state, closed.expires_ns, closed.last_seen_ns),
            (flow_state::CLOSING, NOW + 2_000_000_000, NOW - 5),
            "closed, its own record otherwise kept"
        );
        // Another backend's close is not this flow's.
        let other = Flow {
            backend_id: 9,
            ..own
        };
        let (outcome, _) = learn(
            Some(&other),
            &incoming(flow_state::CLOSING, 2_000),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!(outcome, Outcome::KeptLocal);
    }

    #[test]
    fn a_learned_copy_is_refreshed_never_shortened_unless_the_flow_closes() {
        let copy = entry(0, NOW + 9_000_000_000);
        let (outcome, flow) = learn(
            Some(&copy),
            &incoming(flow_state::OPEN, 1_000),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!(outcome, Outcome::Refreshed);
        assert_eq!(flow, None, "already later: nothing to write");
        let (_, flow) = learn(
            Some(&copy),
            &incoming(flow_state::OPEN, 20_000),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!(flow.unwrap().expires_ns, NOW + 20_000_000_000, "extended");
        let (_, flow) = learn(
            Some(&copy),
            &incoming(flow_state::CLOSING, 1_000),
            TARGET,
            NOW,
            &Settings::default(),
        );
        let flow = flow.unwrap();
        assert_eq!(
            (flow.state, flow.expires_ns),
            (flow_state::CLOSING, NOW + 1_000_000_000)
        );
        // A copy naming another backend takes the peer's word.
        let other = Flow {
            backend_id: 9,
            ..copy
        };
        let (_, flow) = learn(
            Some(&other),
            &incoming(flow_state::OPEN, 1_000),
            TARGET,
            NOW,
            &Settings::default(),
        );
        assert_eq!(flow.unwrap().backend_id, 5);
    }

    #[test]
    fn a_peers_lifetime_is_capped_by_this_hosts() {
        let settings = Settings {
            udp_ns: 30_000_000_000,
            ..Settings::default()
        };
        let mut udp = incoming(flow_state::OPEN, u32::MAX);
        udp.key.proto = PROTO_UDP;
        let (_, flow) = learn(None, &udp, TARGET, NOW, &settings);
        assert_eq!(flow.unwrap().expires_ns, NOW + 30_000_000_000);
        let (_, flow) = learn(
            None,
            &incoming(flow_state::CLOSING, u32::MAX),
            TARGET,
            NOW,
            &settings,
        );
        assert_eq!(
            flow.unwrap().expires_ns,
            NOW + failover_common::DEFAULT_TCP_CLOSING_NS
        );
    }
}
