//! Services and backends in the maps: ids, generations, ordered writes.
//!
//! Every backend slot carries a generation that changes whenever the slot
//! gets a new owner (and is kept when it is emptied), and every flow records
//! the generation it was created with: an id freed by a reload and reused by
//! another service or backend never inherits the old owner's flows.
//!
//! Map writes are ordered so the data path never sees a selection naming a
//! backend that is not yet usable. A change that fails half-way is undone
//! with `Dataplane::restore` (in `adopt`) from a [`Snapshot`] taken before it.

use std::collections::{BTreeMap, BTreeSet};

use failover_common::{MAX_BACKENDS, MAX_SELECTION, MAX_SERVICES, Service};
use tracing::info;

use super::Dataplane;
use crate::{
    dataplane::error::{DataplaneError, SpecError},
    decide::maglev,
    decide::select,
    model::{BackendSpec, BackendState, ServiceSpec},
};

/// What the data path carries for a service besides its backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Maglev table slots (a prime); 0: new flows hash over the selection.
    pub table_size: u32,
    pub mode: select::Mode,
    /// `SERVICE_F_*` bits.
    pub flags: u32,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            table_size: maglev::DEFAULT_TABLE_SIZE,
            mode: select::Mode::Tiers,
            flags: 0,
        }
    }
}

/// A service as a configuration wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedService {
    pub spec: ServiceSpec,
    /// In configuration order; states are used for new backends only.
    pub backends: Vec<BackendSpec>,
    pub settings: ServiceSettings,
}

/// A service the agent manages, with its backends by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub id: u32,
    pub spec: ServiceSpec,
    pub backends: BTreeMap<u32, BackendSpec>,
    pub settings: ServiceSettings,
    /// Generation of the table in use.
    pub table_generation: u32,
}

/// Who holds a backend slot, and since which generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub service: u32,
    pub generation: u32,
}

/// An id freed since the last snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Released {
    Service(u32),
    Backend(u32),
}

/// The agent's record of the maps at one moment, to undo a change with.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub(super) services: BTreeMap<u32, ServiceEntry>,
    pub(super) slots: BTreeMap<u32, Slot>,
}

impl ServiceEntry {
    /// Who takes new flows: the selection [`select::plan`] publishes for
    /// this record (the maps hold it once the write succeeded).
    pub fn new_flows_to(&self) -> Vec<u32> {
        select::new_flows_to(&self.backends, self.settings.mode)
    }
}

impl Dataplane {
    /// A copy of a service's record, to change and write back.
    pub(super) fn entry(&self, service_id: u32) -> Result<ServiceEntry, SpecError> {
        self.services
            .get(&service_id)
            .cloned()
            .ok_or(SpecError::UnknownService { id: service_id })
    }

    pub fn service(&self, id: u32) -> Option<&ServiceEntry> {
        self.services.get(&id)
    }

    /// The generation of a backend slot in use.
    pub fn backend_generation(&self, id: u32) -> Option<u32> {
        self.slots.get(&id).map(|slot| slot.generation)
    }

    /// Adds a service with its backends and the default settings.
    pub fn add_service(
        &mut self,
        spec: ServiceSpec,
        backends: &[BackendSpec],
    ) -> Result<ServiceEntry, DataplaneError> {
        self.add_service_with(spec, backends, ServiceSettings::default())
    }

    /// Adds a service with its backends, published once with `settings`.
    /// Validates everything first; on a map error, undoes what it wrote.
    pub fn add_service_with(
        &mut self,
        spec: ServiceSpec,
        backends: &[BackendSpec],
        settings: ServiceSettings,
    ) -> Result<ServiceEntry, DataplaneError> {
        self.check_endpoints_free(&spec, backends)?;
        self.add_service_unchecked(spec, backends, settings)
    }

    /// [`Self::add_service_with`] without the check that no other service
    /// has its backends' endpoints (a reconcile checks the whole wanted set
    /// instead: mid-way, an endpoint may still be with its old service).
    pub(super) fn add_service_unchecked(
        &mut self,
        spec: ServiceSpec,
        backends: &[BackendSpec],
        settings: ServiceSettings,
    ) -> Result<ServiceEntry, DataplaneError> {
        let name = spec.to_string();
        if self
            .services
            .values()
            .any(|entry| entry.spec.key() == spec.key())
        {
            return Err(SpecError::DuplicateService { service: name }.into());
        }
        if backends.is_empty() {
            return Err(SpecError::NoBackends { service: name }.into());
        }
        if backends.len() > MAX_SELECTION {
            return Err(SpecError::TooManyBackends {
                service: name,
                count: backends.len(),
                max: MAX_SELECTION,
            }
            .into());
        }
        let mut seen = BTreeSet::new();
        for backend in backends {
            if !seen.insert((backend.addr, backend.port)) {
                return Err(SpecError::DuplicateBackend {
                    service: name,
                    backend: backend.to_string(),
                }
                .into());
            }
        }
        let service_id = (0..MAX_SERVICES)
            .filter(|id| !self.services.contains_key(id))
            .min_by_key(|id| self.released.contains(&Released::Service(*id)))
            .ok_or(SpecError::NoServiceSlot {
                service: name.clone(),
                max: MAX_SERVICES,
            })?;
        let free_ids = self.free_backend_ids(backends.len(), &BTreeMap::new());
        if free_ids.len() < backends.len() {
            return Err(SpecError::NoBackendSlot {
                needed: backends.len(),
                free: free_ids.len(),
                max: MAX_BACKENDS,
            }
            .into());
        }

        let mut entry = ServiceEntry {
            id: service_id,
            spec,
            backends: free_ids
                .iter()
                .copied()
                .zip(backends.iter().copied())
                .collect(),
            settings,
            table_generation: 0,
        };
        let written = self.write_new_service(&mut entry);
        if let Err(err) = written {
            for id in entry.backends.keys() {
                if self.slots.get(id).is_some_and(|s| s.service == service_id) {
                    let _ = self.release_slot(*id);
                }
            }
            self.tables.remove(service_id, settings.table_size);
            return Err(err);
        }
        info!(service = %name, id = service_id, backends = backends.len(), "service added");
        self.services.insert(service_id, entry.clone());
        Ok(entry)
    }

    /// Counters from zero, slots claimed, backends, then the service value
    /// (so the selection only ever names written backends).
    fn write_new_service(&mut self, entry: &mut ServiceEntry) -> Result<(), DataplaneError> {
        self.counters.reset_service(entry.id)?;
        for id in entry.backends.keys().copied().collect::<Vec<_>>() {
            self.claim_slot(id, entry.id)?;
        }
        self.write_backends(entry)?;
        self.publish(entry)
    }

    /// Gives a free backend slot to `service` with the next generation, its
    /// counters from zero.
    pub(super) fn claim_slot(&mut self, id: u32, service: u32) -> Result<(), DataplaneError> {
        let previous = self.backends_map.get(id)?.generation;
        let generation = previous.checked_add(1).unwrap_or(1);
        self.counters.reset_backend(id)?;
        self.slots.insert(
            id,
            Slot {
                service,
                generation,
            },
        );
        Ok(())
    }

    /// Empties a backend slot, keeping its generation.
    pub(super) fn release_slot(&mut self, id: u32) -> Result<(), DataplaneError> {
        self.slots.remove(&id);
        self.released.insert(Released::Backend(id));
        self.backends_map.clear(id)?;
        self.release_endpoint(id)
    }

    /// Up to `n` free backend ids (not in use, not in `taken`), ids freed
    /// since the last snapshot last.
    pub(super) fn free_backend_ids(
        &self,
        n: usize,
        taken: &BTreeMap<u32, BackendSpec>,
    ) -> Vec<u32> {
        let free =
            (0..MAX_BACKENDS).filter(|id| !self.slots.contains_key(id) && !taken.contains_key(id));
        let (fresh, recent): (Vec<u32>, Vec<u32>) =
            free.partition(|id| !self.released.contains(&Released::Backend(*id)));
        fresh.into_iter().chain(recent).take(n).collect()
    }

    pub(super) fn write_backends(&mut self, entry: &ServiceEntry) -> Result<(), DataplaneError> {
        self.write_endpoints(entry)?;
        for (id, backend) in &entry.backends {
            let value = self.backend_value(*id, backend, entry.id)?;
            self.backends_map.set(*id, &value)?;
        }
        Ok(())
    }

    pub(super) fn backend_value(
        &self,
        id: u32,
        backend: &BackendSpec,
        service_id: u32,
    ) -> Result<failover_common::Backend, DataplaneError> {
        let slot = self
            .slots
            .get(&id)
            .ok_or(SpecError::UnknownBackend { id })?;
        let mut value = backend.to_map_value(service_id);
        value.generation = slot.generation;
        Ok(value)
    }

    /// Writes the service value with a fresh selection, in one atomic update.
    /// Builds the selection and (with a table size) the Maglev table for the
    /// service's mode, writes the table into the generation not in use and
    /// flips to it in the same update as the selection.
    pub(super) fn publish(&mut self, entry: &mut ServiceEntry) -> Result<(), DataplaneError> {
        let settings = entry.settings;
        let plan = select::plan(&entry.backends, settings.mode, settings.table_size);
        let mut value = Service::new(entry.id);
        value.flags = settings.flags;
        value.active_tier = u32::from(plan.active_tier);
        value.selection_len = plan.selection.len() as u32;
        value.selection[..plan.selection.len()].copy_from_slice(&plan.selection);
        value.table_generation = entry.table_generation;
        if let Some(slots) = &plan.table {
            let generation = entry.table_generation ^ 1;
            self.tables.write(entry.id, generation, slots)?;
            value.table_size = settings.table_size;
            value.table_generation = generation;
        }
        let spares = select::spares(&entry.backends, settings.mode, &plan.selection);
        self.spares.set(entry.id, &spares)?;
        self.services_map.put(&entry.spec.key(), &value)?;
        entry.table_generation = value.table_generation;
        Ok(())
    }

    /// Changes a service's settings and republishes it.
    pub fn set_settings(
        &mut self,
        service_id: u32,
        settings: ServiceSettings,
    ) -> Result<(), DataplaneError> {
        let mut entry = self.entry(service_id)?;
        let old_size = entry.settings.table_size;
        entry.settings = settings;
        self.publish(&mut entry)?;
        if settings.table_size < old_size {
            self.tables
                .remove_beyond(service_id, settings.table_size, old_size);
        }
        self.services.insert(service_id, entry);
        Ok(())
    }

    /// The backend id in a slot of a service's current table.
    pub fn table_slot(&self, service_id: u32, slot: u32) -> Option<u32> {
        let entry = self.services.get(&service_id)?;
        self.tables.slot(service_id, entry.table_generation, slot)
    }

    /// Sets how much of a backend's weight new flows see (slow start), in
    /// the record only: the service's next publish (a state change, or
    /// [`Self::republish`]) writes it.
    pub fn set_ramp(&mut self, backend_id: u32, ramp: u16) -> Result<(), DataplaneError> {
        let service_id = self
            .slots
            .get(&backend_id)
            .ok_or(SpecError::UnknownBackend { id: backend_id })?
            .service;
        let entry = self
            .services
            .get_mut(&service_id)
            .ok_or(SpecError::UnknownService { id: service_id })?;
        if let Some(backend) = entry.backends.get_mut(&backend_id) {
            backend.ramp = ramp;
        }
        Ok(())
    }

    /// Writes a service's value and table again from its record.
    pub fn republish(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        let mut entry = self.entry(service_id)?;
        self.publish(&mut entry)?;
        self.services.insert(service_id, entry);
        Ok(())
    }

    /// Changes a backend's state, ordering the backend slot and the service's
    /// selection/table so new flows are never dropped in between.
    pub fn set_backend_state(
        &mut self,
        backend_id: u32,
        state: BackendState,
    ) -> Result<(), DataplaneError> {
        let service_id = self
            .slots
            .get(&backend_id)
            .ok_or(SpecError::UnknownBackend { id: backend_id })?
            .service;
        let mut entry = self.services[&service_id].clone();
        let backend = entry
            .backends
            .get_mut(&backend_id)
            .expect("slots and services agree");
        let previous = backend.state;
        backend.state = state;
        let value = self.backend_value(backend_id, &entry.backends[&backend_id], service_id)?;
        // Order matters for new flows: a backend that starts taking them is
        // written before the table that names it; one that stops is left out
        // of the table before its slot says so. Either way a new flow never
        // meets a table whose backend refuses it (and is dropped).
        if state == BackendState::Up {
            self.backends_map.set(backend_id, &value)?;
            self.publish(&mut entry)?;
        } else {
            self.publish(&mut entry)?;
            self.backends_map.set(backend_id, &value)?;
        }
        info!(
            service = %entry.spec,
            backend = %entry.backends[&backend_id],
            from = %previous,
            to = %state,
            "backend state changed"
        );
        self.services.insert(service_id, entry);
        Ok(())
    }

    /// Writes a service's backends with `states` (by backend id) and
    /// republishes it: brings the maps back in line with the agent's
    /// decisions after a failed write.
    pub fn resync_service(
        &mut self,
        service_id: u32,
        states: &BTreeMap<u32, BackendState>,
    ) -> Result<(), DataplaneError> {
        let mut entry = self.entry(service_id)?;
        for (id, state) in states {
            if let Some(backend) = entry.backends.get_mut(id) {
                backend.state = *state;
            }
        }
        // Up backends first, the service value, then the others (as in
        // set_backend_state).
        let (up, rest): (Vec<_>, Vec<_>) = entry
            .backends
            .iter()
            .map(|(id, b)| (*id, *b))
            .partition(|(_, b)| b.state == BackendState::Up);
        for (id, backend) in up {
            let value = self.backend_value(id, &backend, service_id)?;
            self.backends_map.set(id, &value)?;
        }
        self.publish(&mut entry)?;
        for (id, backend) in rest {
            let value = self.backend_value(id, &backend, service_id)?;
            self.backends_map.set(id, &value)?;
        }
        self.services.insert(service_id, entry);
        Ok(())
    }

    /// Removes a service: its entry first (no new packets match), then its
    /// table and backend slots.
    pub fn remove_service(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        let entry = self
            .services
            .get(&service_id)
            .ok_or(SpecError::UnknownService { id: service_id })?
            .clone();
        self.services_map.remove(&entry.spec.key())?;
        self.released.insert(Released::Service(service_id));
        self.tables.remove(service_id, entry.settings.table_size);
        for id in entry.backends.keys() {
            self.release_slot(*id)?;
        }
        self.services.remove(&service_id);
        self.trim_addresses()?;
        info!(service = %entry.spec, "service removed");
        Ok(())
    }
}
