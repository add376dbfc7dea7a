//! Loading, attaching and programming the XDP data path.
//!
//! [`Dataplane`] owns the loaded object, its pinned maps and the agent's view
//! of services and backends. Every change is validated before the first map
//! write, and map writes are ordered so the data path never sees a selection
//! naming a backend that is not yet usable.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use failover_common::{
    FAMILY_IPV4, MAX_BACKENDS, MAX_SELECTION, MAX_SERVICES, Service, ServiceKey, names,
};
use tracing::info;

use crate::{
    PASS_PROGRAM_NAME, PROGRAM_NAME, bpffs,
    error::{DataplaneError, SpecError},
    maglev,
    maps::{Backends, Conntrack, Counters, MaglevTables, Services},
    model::{BackendSpec, BackendState, ServiceSpec},
    table,
};

/// How to attach XDP to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (fastest; veth, most NICs).
    Native,
    /// In the generic network stack (works everywhere, slower).
    Skb,
    /// Native, falling back to skb if the driver refuses.
    Auto,
}

/// A service the agent manages, with its backends by id.
#[derive(Clone, Debug)]
pub struct ServiceEntry {
    pub id: u32,
    pub spec: ServiceSpec,
    pub backends: BTreeMap<u32, BackendSpec>,
    /// Maglev table slots (a prime); 0: new flows hash over the selection.
    pub table_size: u32,
    /// Generation of the table in use.
    pub table_generation: u32,
    pub mode: table::Mode,
    /// `SERVICE_F_*` bits.
    pub flags: u32,
}

/// The loaded data path and the agent's record of what it programmed.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    services_map: Services,
    backends_map: Backends,
    tables: MaglevTables,
    conntrack: Conntrack,
    counters: Counters,
    services: BTreeMap<u32, ServiceEntry>,
    backend_owner: BTreeMap<u32, u32>,
    links: Vec<(String, XdpLinkId)>,
}

impl Dataplane {
    /// Loads the embedded XDP object and pins its maps under `pin_dir`
    /// (reusing maps already pinned there). Nothing is attached yet.
    pub fn load(pin_dir: &Path) -> Result<Self, DataplaneError> {
        bpffs::prepare_pin_dir(pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(crate::ebpf_object())
            .map_err(DataplaneError::Load)?;
        for name in [PROGRAM_NAME, PASS_PROGRAM_NAME] {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        Ok(Self {
            services_map: Services::open(&mut ebpf)?,
            backends_map: Backends::open(&mut ebpf)?,
            tables: MaglevTables::open(&mut ebpf)?,
            conntrack: Conntrack::open(&mut ebpf)?,
            counters: Counters::open(&mut ebpf)?,
            ebpf,
            pin_dir: pin_dir.to_owned(),
            services: BTreeMap::new(),
            backend_owner: BTreeMap::new(),
            links: Vec::new(),
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Attaches the forwarding program to `interface` in the calling thread's
    /// network namespace. Returns the mode actually used.
    pub fn attach(
        &mut self,
        interface: &str,
        mode: AttachMode,
    ) -> Result<AttachMode, DataplaneError> {
        self.attach_program(PROGRAM_NAME, interface, mode)
    }

    /// Attaches the pass-everything program (for veth peers: native XDP_TX and
    /// redirect into a veth need an XDP program on its peer).
    pub fn attach_pass(
        &mut self,
        interface: &str,
        mode: AttachMode,
    ) -> Result<AttachMode, DataplaneError> {
        self.attach_program(PASS_PROGRAM_NAME, interface, mode)
    }

    fn attach_program(
        &mut self,
        name: &'static str,
        interface: &str,
        mode: AttachMode,
    ) -> Result<AttachMode, DataplaneError> {
        let program = program_mut(&mut self.ebpf, name)?;
        let attach = |program: &mut Xdp, mode: AttachMode| {
            let xdp_mode = match mode {
                AttachMode::Skb => XdpMode::Skb,
                AttachMode::Native | AttachMode::Auto => XdpMode::Driver,
            };
            program
                .attach(interface, xdp_mode)
                .map_err(|source| DataplaneError::Attach {
                    interface: interface.to_owned(),
                    mode: if mode == AttachMode::Skb {
                        "skb"
                    } else {
                        "native"
                    },
                    source,
                })
        };
        let (link, used) = match mode {
            AttachMode::Auto => match attach(program, AttachMode::Native) {
                Ok(link) => (link, AttachMode::Native),
                Err(err) => {
                    info!(interface, cause = %err, "native XDP refused; using skb mode");
                    (attach(program, AttachMode::Skb)?, AttachMode::Skb)
                }
            },
            mode => (attach(program, mode)?, mode),
        };
        info!(interface, program = name, mode = ?used, "XDP attached");
        self.links.push((interface.to_owned(), link));
        Ok(used)
    }

    /// Attaches the forwarding program to `interface` through a bpf_link
    /// pinned as `<pin_dir>/link_<interface>`, so the program stays attached
    /// when the agent exits or dies (fail-static). If that pin exists, the
    /// running program is replaced atomically in the existing link: traffic
    /// never sees an interface without XDP. Returns the mode used, or `None`
    /// when an existing attachment was adopted.
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        mode: AttachMode,
    ) -> Result<Option<AttachMode>, DataplaneError> {
        let pin = self.pin_dir.join(link_pin_name(interface));
        let link_err = |source: std::io::Error| DataplaneError::Bpffs {
            path: pin.clone(),
            source,
        };
        if pin.exists() {
            let pinned =
                PinnedLink::from_pin(&pin).map_err(|e| link_err(std::io::Error::other(e)))?;
            let link = XdpLink::try_from(FdLink::from(pinned))
                .map_err(|e| link_err(std::io::Error::other(e)))?;
            let program = program_mut(&mut self.ebpf, PROGRAM_NAME)?;
            program
                .attach_to_link(link)
                .map_err(|source| DataplaneError::Attach {
                    interface: interface.to_owned(),
                    mode: "adopted link",
                    source,
                })?;
            info!(
                interface,
                "adopted the pinned XDP link; program replaced in place"
            );
            return Ok(None);
        }
        let used = self.attach(interface, mode)?;
        let (_, link_id) = self.links.pop().expect("attach recorded its link");
        let program = program_mut(&mut self.ebpf, PROGRAM_NAME)?;
        let link = program
            .take_link(link_id)
            .map_err(|source| DataplaneError::Program {
                name: PROGRAM_NAME,
                source,
            })?;
        let fd_link = FdLink::try_from(link).map_err(|e| link_err(std::io::Error::other(e)))?;
        fd_link
            .pin(&pin)
            .map_err(|e| link_err(std::io::Error::other(e)))?;
        Ok(Some(used))
    }

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
            for id in members.keys() {
                self.backend_owner.insert(*id, value.id);
            }
            self.services.insert(
                value.id,
                ServiceEntry {
                    id: value.id,
                    spec,
                    backends: members,
                    table_size: value.table_size,
                    table_generation: value.table_generation,
                    mode: table::Mode::Tiers,
                    flags: value.flags,
                },
            );
            adopted += 1;
        }
        Ok(adopted)
    }

    /// Makes the maps carry exactly `wanted` (service, backends in order):
    /// existing services and backends keep their ids and current state; new
    /// ones are added with the state given; services no longer wanted are
    /// removed. Returns, per wanted service, its id and backend ids in order.
    pub fn reconcile(
        &mut self,
        wanted: &[(ServiceSpec, Vec<BackendSpec>)],
    ) -> Result<Vec<(u32, Vec<u32>)>, DataplaneError> {
        let wanted_keys: std::collections::HashSet<ServiceKey> =
            wanted.iter().map(|(s, _)| s.key()).collect();
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
        for (spec, backends) in wanted {
            let existing = self
                .services
                .values()
                .find(|e| e.spec.key() == spec.key())
                .cloned();
            let Some(mut entry) = existing else {
                let entry = self.add_service(*spec, backends)?;
                result.push((entry.id, entry.backends.keys().copied().collect()));
                continue;
            };
            let mut ids = Vec::with_capacity(backends.len());
            let mut next = BTreeMap::new();
            for backend in backends {
                let found = entry
                    .backends
                    .iter()
                    .find(|(id, b)| {
                        b.addr == backend.addr && b.port == backend.port && !next.contains_key(*id)
                    })
                    .map(|(id, b)| (*id, b.state));
                let id = match found {
                    Some((id, state)) => {
                        next.insert(id, BackendSpec { state, ..*backend });
                        id
                    }
                    None => {
                        let id = (0..MAX_BACKENDS)
                            .find(|id| {
                                !self.backend_owner.contains_key(id) && !next.contains_key(id)
                            })
                            .ok_or(SpecError::NoBackendSlot {
                                needed: 1,
                                free: 0,
                                max: MAX_BACKENDS,
                            })?;
                        next.insert(id, *backend);
                        id
                    }
                };
                ids.push(id);
            }
            let removed: Vec<u32> = entry
                .backends
                .keys()
                .filter(|id| !next.contains_key(id))
                .copied()
                .collect();
            entry.backends = next;
            self.write_backends(&entry)?;
            self.publish(&mut entry)?;
            for id in &removed {
                self.backends_map.clear(*id)?;
                self.backend_owner.remove(id);
            }
            for id in entry.backends.keys() {
                self.backend_owner.insert(*id, entry.id);
            }
            result.push((entry.id, ids));
            self.services.insert(entry.id, entry);
        }
        Ok(result)
    }

    /// The forwarding program, for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> Result<&Xdp, DataplaneError> {
        program(&self.ebpf, PROGRAM_NAME)
    }

    /// The pass-everything program, for BPF_PROG_TEST_RUN floors.
    pub fn pass_program(&self) -> Result<&Xdp, DataplaneError> {
        program(&self.ebpf, PASS_PROGRAM_NAME)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    pub fn backends_map(&self) -> &Backends {
        &self.backends_map
    }

    pub fn services_map(&self) -> &Services {
        &self.services_map
    }

    pub fn service(&self, id: u32) -> Option<&ServiceEntry> {
        self.services.get(&id)
    }

    /// Adds a service with its backends. Validates everything first; on a
    /// map error, rolls back what was written.
    pub fn add_service(
        &mut self,
        spec: ServiceSpec,
        backends: &[BackendSpec],
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
        let service_id = first_free(self.services.keys().copied(), MAX_SERVICES).ok_or(
            SpecError::NoServiceSlot {
                service: name.clone(),
                max: MAX_SERVICES,
            },
        )?;
        let free_ids: Vec<u32> = (0..MAX_BACKENDS)
            .filter(|id| !self.backend_owner.contains_key(id))
            .take(backends.len())
            .collect();
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
            table_size: maglev::DEFAULT_TABLE_SIZE,
            table_generation: 0,
            mode: table::Mode::Tiers,
            flags: 0,
        };
        // Backends first, so the selection only ever names written backends.
        let written = self.write_backends(&entry);
        let published = written.and_then(|()| self.publish(&mut entry));
        if let Err(err) = published {
            for id in entry.backends.keys() {
                let _ = self.backends_map.clear(*id);
            }
            return Err(err);
        }
        for id in entry.backends.keys() {
            self.backend_owner.insert(*id, service_id);
        }
        info!(service = %name, id = service_id, backends = backends.len(), "service added");
        self.services.insert(service_id, entry.clone());
        Ok(entry)
    }

    fn write_backends(&mut self, entry: &ServiceEntry) -> Result<(), DataplaneError> {
        for (id, backend) in &entry.backends {
            self.backends_map
                .set(*id, &backend.to_map_value(entry.id))?;
        }
        Ok(())
    }

    /// Writes the service value with a fresh selection, in one atomic update.
    /// Builds the selection and (with a table size) the Maglev table for the
    /// service's mode, writes the table into the generation not in use and
    /// flips to it in the same update as the selection.
    fn publish(&mut self, entry: &mut ServiceEntry) -> Result<(), DataplaneError> {
        let plan = table::plan(&entry.backends, entry.mode, entry.table_size);
        let mut value = Service::new(entry.id);
        value.flags = entry.flags;
        value.active_tier = u32::from(plan.active_tier);
        value.selection_len = plan.selection.len() as u32;
        value.selection[..plan.selection.len()].copy_from_slice(&plan.selection);
        value.table_generation = entry.table_generation;
        if let Some(slots) = &plan.table {
            let generation = entry.table_generation ^ 1;
            self.tables.write(entry.id, generation, slots)?;
            value.table_size = entry.table_size;
            value.table_generation = generation;
        }
        self.services_map.put(&entry.spec.key(), &value)?;
        entry.table_generation = value.table_generation;
        Ok(())
    }

    /// Sets a service's `SERVICE_F_*` flags and republishes.
    pub fn set_flags(&mut self, service_id: u32, flags: u32) -> Result<(), DataplaneError> {
        let mut entry = self
            .services
            .get(&service_id)
            .ok_or(SpecError::UnknownService { id: service_id })?
            .clone();
        if entry.flags == flags {
            return Ok(());
        }
        entry.flags = flags;
        self.publish(&mut entry)?;
        self.services.insert(service_id, entry);
        Ok(())
    }

    /// Sets a service's redundancy mode and republishes.
    pub fn set_mode(&mut self, service_id: u32, mode: table::Mode) -> Result<(), DataplaneError> {
        let mut entry = self
            .services
            .get(&service_id)
            .ok_or(SpecError::UnknownService { id: service_id })?
            .clone();
        if entry.mode == mode {
            return Ok(());
        }
        entry.mode = mode;
        self.publish(&mut entry)?;
        self.services.insert(service_id, entry);
        Ok(())
    }

    /// Changes a service's Maglev table size (0: no table) and republishes.
    pub fn set_table_size(&mut self, service_id: u32, size: u32) -> Result<(), DataplaneError> {
        let mut entry = self
            .services
            .get(&service_id)
            .ok_or(SpecError::UnknownService { id: service_id })?
            .clone();
        if entry.table_size == size {
            return Ok(());
        }
        let old = entry.table_size;
        entry.table_size = size;
        self.publish(&mut entry)?;
        // Chunks past the new size are never read again: free them.
        self.tables.remove_beyond(service_id, size, old);
        self.services.insert(service_id, entry);
        Ok(())
    }

    /// The backend id in a slot of a service's current table.
    pub fn table_slot(&self, service_id: u32, slot: u32) -> Option<u32> {
        let entry = self.services.get(&service_id)?;
        self.tables.slot(service_id, entry.table_generation, slot)
    }

    /// Changes a backend's state, ordering the backend slot and the service's
    /// selection/table so new flows are never dropped in between.
    pub fn set_backend_state(
        &mut self,
        backend_id: u32,
        state: BackendState,
    ) -> Result<(), DataplaneError> {
        let service_id = *self
            .backend_owner
            .get(&backend_id)
            .ok_or(SpecError::UnknownBackend { id: backend_id })?;
        let mut entry = self.services[&service_id].clone();
        let backend = entry
            .backends
            .get_mut(&backend_id)
            .expect("owner map is consistent");
        let previous = backend.state;
        backend.state = state;
        let value = backend.to_map_value(service_id);
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

    /// Removes a service: its entry first (no new packets match), then its
    /// backend slots.
    pub fn remove_service(&mut self, service_id: u32) -> Result<(), DataplaneError> {
        let entry = self
            .services
            .get(&service_id)
            .ok_or(SpecError::UnknownService { id: service_id })?
            .clone();
        self.services_map.remove(&entry.spec.key())?;
        self.tables.remove(service_id, entry.table_size);
        for id in entry.backends.keys() {
            self.backends_map.clear(*id)?;
            self.backend_owner.remove(id);
        }
        self.services.remove(&service_id);
        info!(service = %entry.spec, "service removed");
        Ok(())
    }

    /// Removes the pins of every map this data path created. Attached
    /// programs detach when the `Dataplane` is dropped.
    pub fn unpin(&self) -> std::io::Result<()> {
        remove_pins(&self.pin_dir)
    }
}

fn link_pin_name(interface: &str) -> String {
    format!("link_{interface}")
}

fn service_spec_of(key: &ServiceKey) -> Option<ServiceSpec> {
    if key.family != FAMILY_IPV4 {
        return None;
    }
    Some(ServiceSpec {
        vip: std::net::Ipv4Addr::from(key.addr[0].to_ne_bytes()),
        port: u16::from_be(key.port_be),
        proto: crate::model::Proto::from_number(key.proto)?,
    })
}

fn backend_spec_of(backend: &failover_common::Backend) -> Option<BackendSpec> {
    if backend.family != FAMILY_IPV4 {
        return None;
    }
    Some(BackendSpec {
        addr: std::net::Ipv4Addr::from(backend.addr[0].to_ne_bytes()),
        port: (backend.port_be != 0).then(|| u16::from_be(backend.port_be)),
        tier: backend.tier,
        weight: backend.weight,
        state: BackendState::from_raw(backend.state)?,
    })
}

/// Removes the map and link pins under `pin_dir` (detaching programs whose
/// only reference was the pin) and the directory if it is then empty.
pub fn remove_pins(pin_dir: &Path) -> std::io::Result<()> {
    let links: Vec<PathBuf> = match std::fs::read_dir(pin_dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("link_"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let maps = names::ALL.iter().map(|name| pin_dir.join(name));
    for path in links.into_iter().chain(maps) {
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    match std::fs::remove_dir(pin_dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn first_free(used: impl Iterator<Item = u32>, max: u32) -> Option<u32> {
    let used: BTreeSet<u32> = used.collect();
    (0..max).find(|id| !used.contains(id))
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or(DataplaneError::MissingProgram { name })?
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}

fn program<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Xdp, DataplaneError> {
    ebpf.program(name)
        .ok_or(DataplaneError::MissingProgram { name })?
        .try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}
