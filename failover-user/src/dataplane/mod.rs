//! Loading, attaching and programming the XDP data path.
//!
//! [`Dataplane`] owns the loaded object, its pinned maps and the agent's view
//! of services and backends. Every change is validated before the first map
//! write, and map writes are ordered so the data path never sees a selection
//! naming a backend that is not yet usable.

mod adopt;
pub mod bpffs;
mod capacity;
mod compat;
mod endpoints;
pub mod error;
pub mod flow_maps;
mod links;
pub mod local_vips;
pub mod maps;
pub mod netdev;
mod reconcile;
mod services;
mod watch;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::ProgramArray,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use failover_common::names;
use tracing::info;

use self::flow_maps::{Addresses, Flows, Reverse, SettingsMap};
use self::maps::{AdminRecords, Backends, Counters, MaglevTables, Services, SparesMap};
use self::services::{Released, Slot};
pub use self::{
    capacity::{Capacity, CapacityError, ServiceNeeds},
    links::{Attached, interface_index, link_pin_name},
    services::{ServiceEntry, ServiceSettings, Snapshot, WantedService},
};
use crate::{PASS_PROGRAM_NAME, PROGRAM_NAME, TAIL_CALLED, dataplane::error::DataplaneError};

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

/// The loaded data path and the agent's record of what it programmed.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    services_map: Services,
    spares: SparesMap,
    backends_map: Backends,
    tables: MaglevTables,
    flows: Flows,
    reverse: Reverse,
    addresses: Addresses,
    flow_settings: SettingsMap,
    counters: Counters,
    admin: AdminRecords,
    services: BTreeMap<u32, ServiceEntry>,
    /// The reverse-NAT key written for each backend id.
    endpoints: BTreeMap<u32, failover_common::ReverseKey>,
    slots: BTreeMap<u32, Slot>,
    /// Ids freed since the last snapshot (handed out last).
    released: std::collections::BTreeSet<Released>,
    links: Vec<(String, XdpLinkId)>,
}

impl Dataplane {
    /// Loads the embedded XDP object and pins its maps under `pin_dir`
    /// (reusing maps already pinned there), with the default flow-table
    /// size. Nothing is attached yet.
    pub fn load(pin_dir: &Path) -> Result<Self, DataplaneError> {
        Self::load_with(pin_dir, failover_common::DEFAULT_MAX_FLOWS)
    }

    /// [`Self::load`] with a flow table of `max_flows` entries. A pinned
    /// table of another size is refused (with the remedy): its size is
    /// fixed once created.
    pub fn load_with(pin_dir: &Path, max_flows: u32) -> Result<Self, DataplaneError> {
        bpffs::prepare_pin_dir(pin_dir)?;
        compat::remove_retired(pin_dir)?;
        compat::check_pins(pin_dir, max_flows)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .map_max_entries(names::FLOWS, max_flows)
            .load(crate::ebpf_object())
            .map_err(DataplaneError::Load)?;
        for name in [PROGRAM_NAME, PASS_PROGRAM_NAME]
            .into_iter()
            .chain(TAIL_CALLED.map(|(name, _)| name))
        {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        hand_over(&mut ebpf)?;
        Ok(Self {
            services_map: Services::open(&mut ebpf)?,
            spares: SparesMap::open(&mut ebpf)?,
            backends_map: Backends::open(&mut ebpf)?,
            tables: MaglevTables::open(&mut ebpf)?,
            flows: Flows::open(&mut ebpf)?,
            reverse: Reverse::open(&mut ebpf)?,
            addresses: Addresses::open(&mut ebpf)?,
            flow_settings: SettingsMap::open(&mut ebpf)?,
            counters: Counters::open(&mut ebpf)?,
            admin: AdminRecords::open(&mut ebpf)?,
            ebpf,
            pin_dir: pin_dir.to_owned(),
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            slots: BTreeMap::new(),
            released: Default::default(),
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
                    info!(interface, cause = %crate::util::chain(&err), "native XDP refused; using skb mode");
                    (attach(program, AttachMode::Skb)?, AttachMode::Skb)
                }
            },
            mode => (attach(program, mode)?, mode),
        };
        info!(interface, program = name, mode = ?used, "XDP attached");
        self.links.push((interface.to_owned(), link));
        Ok(used)
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

    pub fn flows(&self) -> &Flows {
        &self.flows
    }

    pub fn flows_mut(&mut self) -> &mut Flows {
        &mut self.flows
    }

    pub fn reverse_map(&self) -> &Reverse {
        &self.reverse
    }

    /// Writes flow lifetimes and the flood guard's threshold.
    pub fn set_flow_settings(
        &mut self,
        settings: &failover_common::Settings,
    ) -> Result<(), DataplaneError> {
        self.flow_settings.set(settings)
    }

    pub fn backends_map(&self) -> &Backends {
        &self.backends_map
    }

    pub fn services_map(&self) -> &Services {
        &self.services_map
    }

    /// The agent's own state of each backend (`FO_ADMIN`).
    pub fn admin_records(&self) -> &AdminRecords {
        &self.admin
    }

    pub fn admin_records_mut(&mut self) -> &mut AdminRecords {
        &mut self.admin
    }

    /// Removes the pins of every map this data path created. Attached
    /// programs detach when the `Dataplane` is dropped.
    pub fn unpin(&self) -> std::io::Result<()> {
        remove_pins(&self.pin_dir)
    }
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

/// Puts the programs the forwarding program tail-calls into `FO_PROGRAMS`
/// (pinned: they stay there when the agent exits).
fn hand_over(ebpf: &mut Ebpf) -> Result<(), DataplaneError> {
    for (name, slot) in TAIL_CALLED {
        let fd = program(ebpf, name)?
            .fd()
            .map_err(|source| DataplaneError::Program { name, source })?
            .try_clone()
            .map_err(|source| DataplaneError::Program {
                name,
                source: source.into(),
            })?;
        let map_err = |source| DataplaneError::Map {
            name: names::PROGRAMS,
            source,
        };
        let mut slots: ProgramArray<_> = ebpf
            .map_mut(names::PROGRAMS)
            .ok_or(DataplaneError::MissingMap {
                name: names::PROGRAMS,
            })?
            .try_into()
            .map_err(map_err)?;
        slots.set(slot, &fd, 0).map_err(map_err)?;
    }
    Ok(())
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

/// The data path's clock, as `last_seen_ns` in conntrack entries reads it
/// (`bpf_ktime_get_coarse_ns` is CLOCK_MONOTONIC_COARSE).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
