//! Which flows this host sends its peers: those it carries (seen here) on a
//! backend that may keep them but that the service's table no longer names
//! for them (the standby after a failback, a drained or `keep` backend, a
//! slow-start ramp). Every other flow continues on any host without state:
//! the tables are the same everywhere and replies need no flow entry.

use std::{cell::RefCell, collections::HashMap};

use failover_common::{
    Backend, Flow, FlowKey, MaglevChunk, MaglevKey, Service, ServiceKey,
    hash::{FLOW_HASH_SEED, flow_hash},
    pick::{self, PickMaps},
    usable_for_established,
};

use super::{
    maps::LocalMaps,
    wire::{Endpoint, PinnedFlow},
};
use crate::dataplane::error::DataplaneError;

/// Whether a live entry is pinned off its service's table: seen on this
/// host (a copy learned from a peer has never been), on the backend it was
/// recorded with, which may keep it, and not the one the table picks now.
pub fn off_table(flow: &Flow, now: u64, backend: Option<&Backend>, picked: Option<u32>) -> bool {
    let alive = now <= flow.expires_ns && flow.last_seen_ns != 0;
    let kept = backend.is_some_and(|b| {
        b.generation == flow.backend_generation
            && b.service_id == flow.service_id
            && usable_for_established(b.state)
    });
    alive && kept && picked != Some(flow.backend_id)
}

/// The service a flow (client → VIP) belongs to.
pub fn service_key(key: &FlowKey) -> ServiceKey {
    ServiceKey {
        addr: key.dst,
        port_be: key.dst_port_be,
        proto: key.proto,
        family: key.family,
    }
}

/// A backend's endpoint as peers name it, its port resolved (0 in the maps
/// means the service's).
pub fn endpoint(backend: &Backend, service_port_be: u16) -> Endpoint {
    Endpoint {
        family: backend.family,
        addr: backend.addr,
        port_be: if backend.port_be == 0 {
            service_port_be
        } else {
            backend.port_be
        },
    }
}

/// The pinned flows of the local table now, and how many live copies
/// learned from peers it holds.
pub fn pinned_flows(
    maps: &LocalMaps,
    now: u64,
) -> Result<(Vec<PinnedFlow>, usize), DataplaneError> {
    let services: HashMap<ServiceKey, Service> = maps.services.all()?.into_iter().collect();
    let view = TableView {
        maps,
        backends: RefCell::default(),
        chunks: RefCell::default(),
        error: RefCell::default(),
    };
    let mut pinned = Vec::new();
    let mut copies = 0;
    for (key, flow) in maps.flows.entries() {
        if flow.last_seen_ns == 0 && now <= flow.expires_ns {
            copies += 1;
            continue;
        }
        let Some(service) = services.get(&service_key(&key)) else {
            continue;
        };
        let backend = view.backend(flow.backend_id);
        let (picked, _) = pick::pick(&view, service, flow_hash(&key, FLOW_HASH_SEED));
        if let Some(err) = view.error.borrow_mut().take() {
            return Err(err);
        }
        if !off_table(&flow, now, backend.as_ref(), picked.map(|p| p.backend_id)) {
            continue;
        }
        let Some(backend) = backend else { continue };
        let remaining_ns = flow.expires_ns.saturating_sub(now);
        pinned.push(PinnedFlow {
            key,
            backend: endpoint(&backend, key.dst_port_be),
            state: flow.state,
            remaining_ms: u32::try_from(remaining_ns / 1_000_000).unwrap_or(u32::MAX),
        });
    }
    Ok((pinned, copies))
}

/// The maps as the shared pick reads them, each backend and table chunk
/// read once a walk (and only those the flows lead to).
struct TableView<'a> {
    maps: &'a LocalMaps,
    backends: RefCell<HashMap<u32, Option<Backend>>>,
    chunks: RefCell<HashMap<MaglevKey, Option<MaglevChunk>>>,
    error: RefCell<Option<DataplaneError>>,
}

impl PickMaps for TableView<'_> {
    fn backend(&self, id: u32) -> Option<Backend> {
        *self.backends.borrow_mut().entry(id).or_insert_with(|| {
            self.maps
                .backends
                .get(id)
                .ok()
                .filter(|b| b.state != failover_common::backend_state::EMPTY)
        })
    }

    fn table_slot(&self, key: &MaglevKey, index: usize) -> Option<u32> {
        let mut chunks = self.chunks.borrow_mut();
        if !chunks.contains_key(key) {
            let chunk = self.maps.tables.chunk(key).unwrap_or_else(|err| {
                self.error.borrow_mut().get_or_insert(err);
                None
            });
            chunks.insert(*key, chunk);
        }
        chunks[key].and_then(|chunk| chunk.get(index).copied())
    }
}

#[cfg(test)]
mod tests {
    use failover_common::{backend_state, flow_state};

    use super::*;

    fn flow() -> Flow {
        Flow {
            backend_id: 3,
            service_id: 1,
            backend_generation: 7,
            state: flow_state::OPEN,
            last_seen_ns: 900,
            expires_ns: 2_000,
            ..Flow::default()
        }
    }

    fn backend() -> Backend {
        Backend {
            state: backend_state::UP,
            service_id: 1,
            generation: 7,
            ..Backend::default()
        }
    }

    #[test]
    fn only_live_flows_seen_here_on_a_backend_the_table_does_not_pick_are_sent() {
        let (now, b) = (1_000, backend());
        assert!(off_table(&flow(), now, Some(&b), Some(4)));
        assert!(off_table(&flow(), now, Some(&b), None), "no pick at all");
        assert!(
            !off_table(&flow(), now, Some(&b), Some(3)),
            "the table's own"
        );
        assert!(!off_table(&flow(), 2_001, Some(&b), Some(4)), "expired");
        let learned = Flow {
            last_seen_ns: 0,
            ..flow()
        };
        assert!(
            !off_table(&learned, now, Some(&b), Some(4)),
            "a peer's copy"
        );
        let draining = Backend {
            state: backend_state::DRAINING,
            ..b
        };
        assert!(off_table(&flow(), now, Some(&draining), Some(4)));
        for gone in [
            Backend {
                state: backend_state::DOWN,
                ..b
            },
            Backend { generation: 8, ..b },
            Backend { service_id: 2, ..b },
        ] {
            assert!(!off_table(&flow(), now, Some(&gone), Some(4)), "{gone:?}");
        }
        assert!(!off_table(&flow(), now, None, Some(4)));
    }
}
