//! A reload's view of the maps: make them carry exactly the wanted
//! services, keeping the ids, generations and states of what stays.

use std::collections::{BTreeMap, HashSet};

use failover_common::{MAX_BACKENDS, ServiceKey};

use super::{
    Dataplane,
    error::{DataplaneError, SpecError},
    services::WantedService,
};
use crate::model::BackendSpec;

impl Dataplane {
    /// Makes the maps carry exactly `wanted`: existing services and backends
    /// keep their ids, generations and current state; new ones are added
    /// with the state given; services no longer wanted are removed first
    /// (freeing their ids). Returns, per wanted service, its id and backend
    /// ids in order. On an error the maps may be half-changed: restore a
    /// snapshot taken before.
    pub fn reconcile(
        &mut self,
        wanted: &[WantedService],
    ) -> Result<Vec<(u32, Vec<u32>)>, DataplaneError> {
        super::endpoints::check_wanted(wanted)?;
        let wanted_keys: HashSet<ServiceKey> = wanted.iter().map(|w| w.spec.key()).collect();
        let stale: Vec<u32> = self
            .services
            .values()
            .filter(|entry| !wanted_keys.contains(&entry.spec.key()))
            .map(|entry| entry.id)
            .collect();
        for id in stale {
            self.remove_service(id)?;
        }
        let mut result = Vec::new();
        for want in wanted {
            let existing = self
                .services
                .values()
                .find(|e| e.spec.key() == want.spec.key())
                .map(|e| e.id);
            match existing {
                None => {
                    let entry =
                        self.add_service_unchecked(want.spec, &want.backends, want.settings)?;
                    result.push((entry.id, entry.backends.keys().copied().collect()));
                }
                Some(id) => result.push((id, self.update_service(id, want)?)),
            }
        }
        Ok(result)
    }

    /// Brings an existing service to `want`: backends matched by address
    /// and port keep id, generation and state; others get new slots.
    fn update_service(
        &mut self,
        id: u32,
        want: &WantedService,
    ) -> Result<Vec<u32>, DataplaneError> {
        let mut entry = self.services[&id].clone();
        let mut ids = Vec::with_capacity(want.backends.len());
        let mut next = BTreeMap::new();
        let mut claimed = Vec::new();
        for backend in &want.backends {
            let kept = entry
                .backends
                .iter()
                .find(|(bid, b)| {
                    b.addr == backend.addr && b.port == backend.port && !next.contains_key(*bid)
                })
                .map(|(bid, b)| (*bid, b.state, b.ramp));
            let bid = match kept {
                Some((bid, state, ramp)) => {
                    next.insert(
                        bid,
                        BackendSpec {
                            state,
                            ramp,
                            ..*backend
                        },
                    );
                    bid
                }
                None => {
                    let bid = self.free_backend_ids(1, &next).first().copied().ok_or(
                        SpecError::NoBackendSlot {
                            needed: 1,
                            free: 0,
                            max: MAX_BACKENDS,
                        },
                    )?;
                    next.insert(bid, *backend);
                    claimed.push(bid);
                    bid
                }
            };
            ids.push(bid);
        }
        for bid in &claimed {
            self.claim_slot(*bid, id)?;
        }
        let removed: Vec<u32> = entry
            .backends
            .keys()
            .filter(|bid| !next.contains_key(bid))
            .copied()
            .collect();
        let old_size = entry.settings.table_size;
        entry.backends = next;
        entry.settings = want.settings;
        self.write_backends(&entry)?;
        self.publish(&mut entry)?;
        if entry.settings.table_size < old_size {
            // Chunks past the new size are never read again: free them.
            self.tables
                .remove_beyond(id, entry.settings.table_size, old_size);
        }
        for bid in &removed {
            self.release_slot(*bid)?;
        }
        self.services.insert(id, entry);
        self.trim_addresses()?;
        Ok(ids)
    }
}
