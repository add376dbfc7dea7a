//! Typed handles on the data path's maps. Each map is wrapped once here; the
//! rest of the agent never touches raw aya maps.

use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use failover_common::{
    AdminRecord, Backend, Counter, EGRESS_F_VIA_STACK, EGRESS_SLOTS, Egress, Evidence,
    MAGLEV_CHUNK_SLOTS, MAX_SPARES, MaglevChunk, MaglevKey, Service, ServiceKey, Spares,
    TimersRecord, TrafficStats, names,
    stats::{VERDICT_COUNT, reason},
};

use crate::dataplane::error::DataplaneError;

pub(super) fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// Where a handle comes from: the freshly loaded object, or a pin.
pub trait MapSource {
    fn take(&mut self, name: &'static str) -> Result<Map, DataplaneError>;
}

impl MapSource for aya::Ebpf {
    fn take(&mut self, name: &'static str) -> Result<Map, DataplaneError> {
        self.take_map(name)
            .ok_or(DataplaneError::MissingMap { name })
    }
}

/// Opens maps pinned under a directory (works with the agent dead).
pub struct PinDir<'a>(pub &'a Path);

impl MapSource for PinDir<'_> {
    fn take(&mut self, name: &'static str) -> Result<Map, DataplaneError> {
        let data = MapData::from_pin(self.0.join(name)).map_err(map_err(name))?;
        // The map type decides which typed wrapper accepts it.
        Ok(match name {
            names::SERVICES | names::MAGLEV | names::REVERSE => Map::HashMap(data),
            names::BACKENDS | names::ADMIN | names::EGRESS | names::ADDRESSES | names::SETTINGS => {
                Map::Array(data)
            }
            names::REDIRECT_DROPS => Map::PerCpuHashMap(data),
            names::FLOWS => Map::LruHashMap(data),
            _ => Map::PerCpuArray(data),
        })
    }
}

/// `FO_SERVICES`: (VIP, port, proto) → service.
pub struct Services(HashMap<MapData, ServiceKey, Service>);

impl Services {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::SERVICES)?;
        Ok(Self(
            HashMap::try_from(map).map_err(map_err(names::SERVICES))?,
        ))
    }

    /// Publishes a service value; replaces any previous value atomically.
    pub fn put(&mut self, key: &ServiceKey, value: &Service) -> Result<(), DataplaneError> {
        self.0
            .insert(key, value, 0)
            .map_err(map_err(names::SERVICES))
    }

    pub fn remove(&mut self, key: &ServiceKey) -> Result<(), DataplaneError> {
        self.0.remove(key).map_err(map_err(names::SERVICES))
    }

    pub fn get(&self, key: &ServiceKey) -> Result<Option<Service>, DataplaneError> {
        match self.0.get(key, 0) {
            Ok(value) => Ok(Some(value)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(DataplaneError::Map {
                name: names::SERVICES,
                source,
            }),
        }
    }

    pub fn all(&self) -> Result<Vec<(ServiceKey, Service)>, DataplaneError> {
        self.0
            .iter()
            .map(|entry| entry.map_err(map_err(names::SERVICES)))
            .collect()
    }
}

/// `FO_SPARES`: per service id, where a refused SYN may go besides the
/// selection.
pub struct SparesMap(Array<MapData, Spares>);

impl SparesMap {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::SPARES)?;
        Ok(Self(Array::try_from(map).map_err(map_err(names::SPARES))?))
    }

    pub fn set(&mut self, service_id: u32, ids: &[u32]) -> Result<(), DataplaneError> {
        let mut value = Spares::default();
        let len = ids.len().min(MAX_SPARES);
        value.ids[..len].copy_from_slice(&ids[..len]);
        value.len = len as u32;
        self.0
            .set(service_id, value, 0)
            .map_err(map_err(names::SPARES))
    }
}

/// `FO_MAGLEV`: the services' lookup tables, 256 slots per value.
pub struct MaglevTables(HashMap<MapData, MaglevKey, MaglevChunk>);

impl MaglevTables {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::MAGLEV)?;
        Ok(Self(
            HashMap::try_from(map).map_err(map_err(names::MAGLEV))?,
        ))
    }

    /// Writes a whole table (backend id per slot) as one generation.
    pub fn write(
        &mut self,
        service_id: u32,
        generation: u32,
        table: &[u32],
    ) -> Result<(), DataplaneError> {
        for (chunk, slots) in table.chunks(MAGLEV_CHUNK_SLOTS).enumerate() {
            let mut value = [0u32; MAGLEV_CHUNK_SLOTS];
            value[..slots.len()].copy_from_slice(slots);
            let key = MaglevKey {
                service_id,
                generation,
                chunk: chunk as u32,
            };
            self.0
                .insert(key, value, 0)
                .map_err(map_err(names::MAGLEV))?;
        }
        Ok(())
    }

    /// Removes both generations of a table of `size` slots.
    pub fn remove(&mut self, service_id: u32, size: u32) {
        self.remove_beyond(service_id, 0, size);
    }

    /// Removes the chunks a table of `kept` slots does not use, of both
    /// generations of a table that had `had` slots.
    pub fn remove_beyond(&mut self, service_id: u32, kept: u32, had: u32) {
        let chunks = |slots: u32| slots.div_ceil(MAGLEV_CHUNK_SLOTS as u32);
        for generation in 0..2 {
            for chunk in chunks(kept)..chunks(had) {
                let _ = self.0.remove(&MaglevKey {
                    service_id,
                    generation,
                    chunk,
                });
            }
        }
    }

    /// The backend id in one slot, if that chunk exists.
    pub fn slot(&self, service_id: u32, generation: u32, slot: u32) -> Option<u32> {
        let key = MaglevKey {
            service_id,
            generation,
            chunk: slot / MAGLEV_CHUNK_SLOTS as u32,
        };
        self.chunk_slot(&key, slot as usize % MAGLEV_CHUNK_SLOTS)
            .ok()
            .flatten()
    }

    /// One chunk of a table (`None`: no such chunk).
    pub fn chunk(&self, key: &MaglevKey) -> Result<Option<MaglevChunk>, DataplaneError> {
        match self.0.get(key, 0) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(err) => Err(map_err(names::MAGLEV)(err)),
        }
    }

    /// The backend id in slot `index` of one chunk (`None`: no such chunk).
    pub fn chunk_slot(&self, key: &MaglevKey, index: usize) -> Result<Option<u32>, DataplaneError> {
        match self.0.get(key, 0) {
            Ok(chunk) => Ok(chunk.get(index).copied()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(err) => Err(map_err(names::MAGLEV)(err)),
        }
    }
}

/// `FO_BACKENDS`: backend id → backend.
pub struct Backends(Array<MapData, Backend>);

impl Backends {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::BACKENDS)?;
        Ok(Self(
            Array::try_from(map).map_err(map_err(names::BACKENDS))?,
        ))
    }

    pub fn set(&mut self, id: u32, value: &Backend) -> Result<(), DataplaneError> {
        self.0.set(id, value, 0).map_err(map_err(names::BACKENDS))
    }

    /// Marks a slot unused, keeping its generation (the next owner gets a
    /// higher one).
    pub fn clear(&mut self, id: u32) -> Result<(), DataplaneError> {
        let generation = self.get(id)?.generation;
        self.set(
            id,
            &Backend {
                generation,
                ..Backend::default()
            },
        )
    }

    pub fn get(&self, id: u32) -> Result<Backend, DataplaneError> {
        self.0.get(&id, 0).map_err(map_err(names::BACKENDS))
    }

    /// Every slot in use, with its id.
    pub fn in_use(&self) -> Result<Vec<(u32, Backend)>, DataplaneError> {
        let mut used = Vec::new();
        for (id, backend) in self.0.iter().enumerate() {
            let backend = backend.map_err(map_err(names::BACKENDS))?;
            if backend.state != failover_common::backend_state::EMPTY {
                used.push((id as u32, backend));
            }
        }
        Ok(used)
    }
}

/// `FO_ADMIN`: backend id → the agent's own state of it.
pub struct AdminRecords {
    admin: Array<MapData, AdminRecord>,
    timers: Array<MapData, TimersRecord>,
}

impl AdminRecords {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let admin = source.take(names::ADMIN)?;
        let timers = source.take(names::TIMERS)?;
        Ok(Self {
            admin: Array::try_from(admin).map_err(map_err(names::ADMIN))?,
            timers: Array::try_from(timers).map_err(map_err(names::TIMERS))?,
        })
    }

    pub fn set(&mut self, id: u32, value: &AdminRecord) -> Result<(), DataplaneError> {
        self.admin.set(id, value, 0).map_err(map_err(names::ADMIN))
    }

    pub fn get(&self, id: u32) -> Result<AdminRecord, DataplaneError> {
        self.admin.get(&id, 0).map_err(map_err(names::ADMIN))
    }

    /// `FO_TIMERS`: a backend's flap damping and slow start.
    pub fn set_timers(&mut self, id: u32, value: &TimersRecord) -> Result<(), DataplaneError> {
        self.timers
            .set(id, value, 0)
            .map_err(map_err(names::TIMERS))
    }

    pub fn timers(&self, id: u32) -> Result<TimersRecord, DataplaneError> {
        self.timers.get(&id, 0).map_err(map_err(names::TIMERS))
    }
}

/// `FO_EGRESS`: how to send to an egress interface.
pub struct EgressMap(Array<MapData, Egress>);

impl EgressMap {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::EGRESS)?;
        Ok(Self(Array::try_from(map).map_err(map_err(names::EGRESS))?))
    }

    /// Sends packets for `ifindex` through the stack (`true`) or by
    /// redirect (`false`).
    pub fn set_via_stack(&mut self, ifindex: u32, via_stack: bool) -> Result<(), DataplaneError> {
        let value = Egress {
            ifindex,
            flags: if via_stack { EGRESS_F_VIA_STACK } else { 0 },
        };
        self.0
            .set(ifindex % EGRESS_SLOTS, value, 0)
            .map_err(map_err(names::EGRESS))
    }

    /// Every interface marked to go through the stack.
    pub fn via_stack(&self) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(Result::ok)
            .filter(|e| e.flags & EGRESS_F_VIA_STACK != 0)
            .map(|e| e.ifindex)
            .collect()
    }

    /// Redirects again everywhere (a new agent detects afresh).
    pub fn clear(&mut self) -> Result<(), DataplaneError> {
        for slot in 0..EGRESS_SLOTS {
            self.0
                .set(slot, Egress::default(), 0)
                .map_err(map_err(names::EGRESS))?;
        }
        Ok(())
    }
}

/// `FO_REDIRECT_DROPS`: frames the kernel dropped after our redirects, by
/// egress ifindex.
pub struct RedirectDrops(PerCpuHashMap<MapData, u32, u64>);

impl RedirectDrops {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::REDIRECT_DROPS)?;
        Ok(Self(
            PerCpuHashMap::try_from(map).map_err(map_err(names::REDIRECT_DROPS))?,
        ))
    }

    /// Drops so far, summed over CPUs, by ifindex.
    pub fn all(&self) -> std::collections::BTreeMap<u32, u64> {
        self.0
            .iter()
            .filter_map(Result::ok)
            .map(|(ifindex, per_cpu)| (ifindex, per_cpu.iter().sum()))
            .collect()
    }
}

fn sum(values: &[Counter]) -> Counter {
    values.iter().fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}

/// All per-CPU counter arrays, summed over CPUs when read.
pub struct Counters {
    verdicts: PerCpuArray<MapData, Counter>,
    reasons: PerCpuArray<MapData, Counter>,
    backends: PerCpuArray<MapData, TrafficStats>,
    services: PerCpuArray<MapData, TrafficStats>,
    evidence: PerCpuArray<MapData, Evidence>,
}

impl Counters {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        fn open_one<V: aya::Pod>(
            source: &mut impl MapSource,
            name: &'static str,
        ) -> Result<PerCpuArray<MapData, V>, DataplaneError> {
            PerCpuArray::try_from(source.take(name)?).map_err(map_err(name))
        }
        Ok(Self {
            verdicts: open_one(source, names::VERDICTS)?,
            reasons: open_one(source, names::REASONS)?,
            backends: open_one(source, names::BACKEND_STATS)?,
            services: open_one(source, names::SERVICE_STATS)?,
            evidence: open_one(source, names::EVIDENCE)?,
        })
    }

    fn read(
        map: &PerCpuArray<MapData, Counter>,
        name: &'static str,
        count: u32,
    ) -> Result<Vec<Counter>, DataplaneError> {
        (0..count)
            .map(|i| map.get(&i, 0).map(|v| sum(&v)).map_err(map_err(name)))
            .collect()
    }

    /// Indexed by XDP action.
    pub fn verdicts(&self) -> Result<Vec<Counter>, DataplaneError> {
        Self::read(&self.verdicts, names::VERDICTS, VERDICT_COUNT)
    }

    /// Indexed by `stats::reason`.
    pub fn reasons(&self) -> Result<Vec<Counter>, DataplaneError> {
        Self::read(&self.reasons, names::REASONS, reason::COUNT)
    }

    fn traffic(
        map: &PerCpuArray<MapData, TrafficStats>,
        name: &'static str,
        id: u32,
    ) -> Result<TrafficStats, DataplaneError> {
        let per_cpu = map.get(&id, 0).map_err(map_err(name))?;
        let to: Vec<Counter> = per_cpu.iter().map(|s| s.to_backend).collect();
        let from: Vec<Counter> = per_cpu.iter().map(|s| s.from_backend).collect();
        Ok(TrafficStats {
            to_backend: sum(&to),
            from_backend: sum(&from),
        })
    }

    fn zero<V: aya::Pod + Default>(
        map: &mut PerCpuArray<MapData, V>,
        name: &'static str,
        id: u32,
    ) -> Result<(), DataplaneError> {
        let system = |source| DataplaneError::System {
            what: "counting possible CPUs",
            source,
        };
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| system(source))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![V::default(); cpus]).map_err(system)?;
        map.set(id, zeros, 0).map_err(map_err(name))
    }

    /// Zeroes a backend id's traffic and evidence (for its next owner).
    pub fn reset_backend(&mut self, id: u32) -> Result<(), DataplaneError> {
        Self::zero(&mut self.backends, names::BACKEND_STATS, id)?;
        Self::zero(&mut self.evidence, names::EVIDENCE, id)
    }

    /// What the data path saw of a backend id's handshakes.
    pub fn evidence(&self, id: u32) -> Result<Evidence, DataplaneError> {
        let per_cpu = self
            .evidence
            .get(&id, 0)
            .map_err(map_err(names::EVIDENCE))?;
        Ok(Evidence::sum(&per_cpu))
    }

    /// Zeroes a service id's traffic (for its next owner).
    pub fn reset_service(&mut self, id: u32) -> Result<(), DataplaneError> {
        Self::zero(&mut self.services, names::SERVICE_STATS, id)
    }

    pub fn backend(&self, id: u32) -> Result<TrafficStats, DataplaneError> {
        Self::traffic(&self.backends, names::BACKEND_STATS, id)
    }

    pub fn service(&self, id: u32) -> Result<TrafficStats, DataplaneError> {
        Self::traffic(&self.services, names::SERVICE_STATS, id)
    }
}
