//! What the data path derives from services and backends: the reverse NAT
//! of each backend endpoint (`FO_REVERSE`: a reply finds its VIP without
//! per-flow state) and the address filter (`FO_ADDRESSES`). Both are
//! written before the service value that makes a backend selectable, and
//! trimmed after removals.

use std::collections::BTreeMap;

use failover_common::{ADDRESS_F_BACKEND, ADDRESS_F_VIP, ReverseKey, ReverseNat, address_slot};

use super::{
    Dataplane,
    error::{DataplaneError, SpecError},
    services::ServiceEntry,
};
use crate::model::{BackendSpec, ServiceSpec, addr_key, endpoint_text};

/// A backend endpoint's `FO_REVERSE` key.
pub fn endpoint(service: &ServiceSpec, backend: &BackendSpec) -> ReverseKey {
    let (addr, port, proto) = backend.endpoint(service);
    let (addr, family) = addr_key(addr);
    ReverseKey::new(family, addr, port.to_be(), proto.number())
}

/// Refuses services of which two have a backend endpoint in common,
/// naming the later one's backend and the earlier service.
fn endpoints_unshared<'a>(
    services: impl IntoIterator<Item = (&'a ServiceSpec, Vec<&'a BackendSpec>)>,
) -> Result<(), SpecError> {
    let mut owners: BTreeMap<ReverseKey, &ServiceSpec> = BTreeMap::new();
    for (spec, backends) in services {
        for backend in backends {
            let owner = *owners.entry(endpoint(spec, backend)).or_insert(spec);
            if owner.key() != spec.key() {
                let (addr, port, _) = backend.endpoint(spec);
                return Err(SpecError::SharedEndpoint {
                    backend: endpoint_text(addr, port),
                    service: spec.to_string(),
                    other: owner.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Refuses a wanted set in which two services have a backend endpoint in
/// common.
pub(super) fn check_wanted(wanted: &[super::WantedService]) -> Result<(), SpecError> {
    endpoints_unshared(
        wanted
            .iter()
            .map(|w| (&w.spec, w.backends.iter().collect())),
    )
}

/// Filter slots (and flags) of a service's VIP and backends.
fn address_flags(entry: &ServiceEntry, into: &mut BTreeMap<u32, u32>) {
    let (vip, _) = addr_key(entry.spec.vip);
    *into.entry(address_slot(&vip)).or_default() |= ADDRESS_F_VIP;
    for backend in entry.backends.values() {
        let (addr, _) = addr_key(backend.addr);
        *into.entry(address_slot(&addr)).or_default() |= ADDRESS_F_BACKEND;
    }
}

impl Dataplane {
    /// Refuses a backend whose endpoint another service's backend has: its
    /// replies could not be told apart.
    pub(super) fn check_endpoints_free(
        &self,
        spec: &ServiceSpec,
        backends: &[BackendSpec],
    ) -> Result<(), SpecError> {
        let others = self
            .services
            .values()
            .filter(|entry| entry.spec.key() != spec.key())
            .map(|entry| (&entry.spec, entry.backends.values().collect()));
        endpoints_unshared(others.chain([(spec, backends.iter().collect())]))
    }

    /// Covers the service's addresses in the filter and writes the reverse
    /// NAT of each of its backends (before the service value names them).
    pub(super) fn write_endpoints(&mut self, entry: &ServiceEntry) -> Result<(), DataplaneError> {
        let mut flags = BTreeMap::new();
        address_flags(entry, &mut flags);
        self.addresses.cover(&flags)?;
        for (id, backend) in &entry.backends {
            let key = endpoint(&entry.spec, backend);
            let value = ReverseNat {
                vip: addr_key(entry.spec.vip).0,
                vip_port_be: entry.spec.port.to_be(),
                service_id: entry.id,
                backend_id: *id,
                ..ReverseNat::default()
            };
            self.reverse.put(&key, value)?;
            self.endpoints.insert(*id, key);
        }
        Ok(())
    }

    /// Forgets a released backend's reverse NAT.
    pub(super) fn release_endpoint(&mut self, id: u32) -> Result<(), DataplaneError> {
        match self.endpoints.remove(&id) {
            Some(key) => self.reverse.remove_if_owned(&key, id),
            None => Ok(()),
        }
    }

    /// Clears filter slots no VIP or backend needs any more.
    pub(super) fn trim_addresses(&mut self) -> Result<(), DataplaneError> {
        let mut flags = BTreeMap::new();
        for entry in self.services.values() {
            address_flags(entry, &mut flags);
        }
        self.addresses.trim(&flags)
    }

    /// Writes every service's endpoints again (after adopting maps an
    /// earlier agent pinned, which may predate them) and trims the filter.
    pub(super) fn rewrite_endpoints(&mut self) -> Result<(), DataplaneError> {
        let entries: Vec<ServiceEntry> = self.services.values().cloned().collect();
        for entry in &entries {
            self.write_endpoints(entry)?;
        }
        let owned: Vec<(ReverseKey, ReverseNat)> = self.reverse.all();
        for (key, value) in owned {
            if self.endpoints.get(&value.backend_id) != Some(&key) {
                self.reverse.remove_if_owned(&key, value.backend_id)?;
            }
        }
        self.trim_addresses()
    }
}
