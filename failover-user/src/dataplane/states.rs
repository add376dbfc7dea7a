//! A backend's state in the maps: written in the order that never drops a
//! new flow, and written again after a failed write.

use std::collections::BTreeMap;

use tracing::info;

use super::{
    Dataplane,
    error::{DataplaneError, SpecError},
};
use crate::model::BackendState;

impl Dataplane {
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
}
