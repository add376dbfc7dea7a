//! What outlives one agent or one change: adopting the maps an earlier
//! agent pinned, and putting them back exactly after a change failed.

use std::collections::BTreeMap;

use failover_common::ServiceKey;

use super::{
    Dataplane,
    error::DataplaneError,
    services::{ServiceEntry, ServiceSettings, Slot, Snapshot},
};
use crate::{
    decide::select,
    model::{BackendSpec, BackendState, ServiceSpec, addr_of_key},
};

impl Dataplane {
    /// Rebuilds the agent's record from maps pinned by an earlier agent, so a
    /// restart keeps every id (and so every tracked flow's backend).
    pub fn adopt(&mut self) -> Result<usize, DataplaneError> {
        let backends = self.backends_map.in_use()?;
        let mut adopted = 0;
        for (key, value) in self.services_map.all()? {
            let Some(spec) = service_spec_of(&key) else {
                continue;
            };
            let members: BTreeMap<u32, BackendSpec> = backends
                .iter()
                .filter(|(_, b)| b.service_id == value.id)
                .filter_map(|(id, b)| backend_spec_of(b).map(|spec| (*id, spec)))
                .collect();
            for (id, backend) in &backends {
                if backend.service_id == value.id {
                    self.slots.insert(
                        *id,
                        Slot {
                            service: value.id,
                            generation: backend.generation,
                        },
                    );
                }
            }
            self.services.insert(
                value.id,
                ServiceEntry {
                    id: value.id,
                    spec,
                    backends: members,
                    settings: ServiceSettings {
                        table_size: value.table_size,
                        mode: select::Mode::Tiers,
                        flags: value.flags,
                    },
                    table_generation: value.table_generation,
                },
            );
            adopted += 1;
        }
        // Maps of an earlier build may lack the reverse NAT and the address
        // filter (or hold stale ones): derive them from what was adopted.
        self.rewrite_endpoints()?;
        Ok(adopted)
    }

    /// The agent's record now, to [`Self::restore`] after a failed change.
    /// Until the next snapshot, ids freed by the change are given out only
    /// when no other id is free: a change that fails then leaves the ids of
    /// the snapshot untouched, counters included.
    pub fn snapshot(&mut self) -> Snapshot {
        self.released.clear();
        Snapshot {
            services: self.services.clone(),
            slots: self.slots.clone(),
        }
    }

    /// Puts the maps back to `snapshot` after a change failed half-way:
    /// services and slots the change added are removed, and every service
    /// of the snapshot is written again with its exact backends, states,
    /// generations and settings.
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<(), DataplaneError> {
        let foreign: Vec<u32> = self
            .services
            .values()
            .filter(|now| {
                snapshot
                    .services
                    .get(&now.id)
                    .is_none_or(|then| then.spec.key() != now.spec.key())
            })
            .map(|entry| entry.id)
            .collect();
        for id in foreign {
            self.remove_service(id)?;
        }
        let stray: Vec<u32> = self
            .slots
            .iter()
            .filter(|(id, slot)| snapshot.slots.get(id) != Some(slot))
            .map(|(id, _)| *id)
            .collect();
        for id in stray {
            self.release_slot(id)?;
        }
        for (id, slot) in &snapshot.slots {
            self.slots.insert(*id, *slot);
        }
        for (id, then) in snapshot.services {
            let mut entry = then;
            // Write into the table generation not in use now.
            if let Some(now) = self.services.get(&id) {
                entry.table_generation = now.table_generation;
            }
            self.write_backends(&entry)?;
            self.publish(&mut entry)?;
            self.services.insert(id, entry);
        }
        Ok(())
    }
}

fn service_spec_of(key: &ServiceKey) -> Option<ServiceSpec> {
    Some(ServiceSpec {
        vip: addr_of_key(&key.addr, key.family)?,
        port: u16::from_be(key.port_be),
        proto: crate::model::Proto::from_number(key.proto)?,
    })
}

fn backend_spec_of(backend: &failover_common::Backend) -> Option<BackendSpec> {
    Some(BackendSpec {
        addr: addr_of_key(&backend.addr, backend.family)?,
        port: (backend.port_be != 0).then(|| u16::from_be(backend.port_be)),
        tier: backend.tier,
        weight: backend.weight,
        state: BackendState::from_raw(backend.state)?,
        ramp: crate::model::RAMP_FULL,
    })
}
