//! Typed handles on the flow table and what it relies on: the reverse NAT
//! of backend endpoints, the address filter and the flow settings.

use std::collections::BTreeMap;

use aya::maps::{Array, HashMap, Map, MapData};
use failover_common::{ADDRESS_SLOTS, Flow, FlowKey, ReverseKey, ReverseNat, Settings, names};

use super::{
    error::DataplaneError,
    maps::{MapSource, map_err},
};

/// `FO_FLOWS`: one entry per flow, client → VIP.
pub struct Flows {
    map: HashMap<MapData, FlowKey, Flow>,
    capacity: u32,
}

impl Flows {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::FLOWS)?;
        let capacity = match &map {
            Map::LruHashMap(data) | Map::HashMap(data) => {
                data.info().map_err(map_err(names::FLOWS))?.max_entries()
            }
            _ => 0,
        };
        let map = HashMap::try_from(map).map_err(map_err(names::FLOWS))?;
        Ok(Self { map, capacity })
    }

    /// Entries the table holds at most (`max_flows` when it was created).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn get(&self, key: &FlowKey) -> Result<Option<Flow>, DataplaneError> {
        match self.map.get(key, 0) {
            Ok(value) => Ok(Some(value)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(DataplaneError::Map {
                name: names::FLOWS,
                source,
            }),
        }
    }

    /// How many entries there are (keys only: no values are copied; a walk
    /// of the whole table, so not for the agent's hot paths).
    pub fn count(&self) -> u64 {
        self.map.keys().filter(Result::is_ok).count() as u64
    }

    /// A snapshot of all entries (entries may come and go while iterating).
    pub fn entries(&self) -> Vec<(FlowKey, Flow)> {
        self.map.iter().filter_map(Result::ok).collect()
    }

    /// Writes an entry: only if there is none (`only_new`: the data path
    /// may have recorded one meanwhile, which wins), or whatever is there.
    /// `Ok(false)`: one was there.
    pub fn put(
        &mut self,
        key: &FlowKey,
        flow: &Flow,
        only_new: bool,
    ) -> Result<bool, DataplaneError> {
        const BPF_NOEXIST: u64 = 1;
        match self
            .map
            .insert(key, flow, if only_new { BPF_NOEXIST } else { 0 })
        {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::SyscallError(err))
                if only_new && err.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(false)
            }
            Err(source) => Err(DataplaneError::Map {
                name: names::FLOWS,
                source,
            }),
        }
    }

    /// Removes an entry; one already gone is not an error.
    pub fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
        match self.map.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(DataplaneError::Map {
                name: names::FLOWS,
                source,
            }),
        }
    }
}

/// `FO_REVERSE`: backend endpoint → the VIP its replies come from.
pub struct Reverse(HashMap<MapData, ReverseKey, ReverseNat>);

impl Reverse {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::REVERSE)?;
        Ok(Self(
            HashMap::try_from(map).map_err(map_err(names::REVERSE))?,
        ))
    }

    pub fn get(&self, key: &ReverseKey) -> Option<ReverseNat> {
        self.0.get(key, 0).ok()
    }

    /// Writes the endpoint's value, keeping the reply interface the data
    /// path learned for the same backend.
    pub fn put(&mut self, key: &ReverseKey, mut value: ReverseNat) -> Result<(), DataplaneError> {
        if let Some(old) = self.get(key)
            && old.backend_id == value.backend_id
        {
            value.reply_ifindex = old.reply_ifindex;
        }
        self.0
            .insert(key, value, 0)
            .map_err(map_err(names::REVERSE))
    }

    /// Removes the endpoint if it still belongs to `backend_id` (another
    /// service may have taken the endpoint over in the same change).
    pub fn remove_if_owned(
        &mut self,
        key: &ReverseKey,
        backend_id: u32,
    ) -> Result<(), DataplaneError> {
        if self
            .get(key)
            .is_some_and(|value| value.backend_id == backend_id)
        {
            match self.0.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(DataplaneError::Map {
                        name: names::REVERSE,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn all(&self) -> Vec<(ReverseKey, ReverseNat)> {
        self.0.iter().filter_map(Result::ok).collect()
    }
}

/// `FO_ADDRESSES`: the filter over VIP and backend addresses. The handle
/// remembers what it wrote, so each change writes only the slots it moves.
pub struct Addresses {
    map: Array<MapData, u32>,
    written: BTreeMap<u32, u32>,
}

impl Addresses {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::ADDRESSES)?;
        let map = Array::try_from(map).map_err(map_err(names::ADDRESSES))?;
        let written = map
            .iter()
            .enumerate()
            .filter_map(|(slot, flags)| Some((slot as u32, flags.ok()?)))
            .filter(|(_, flags)| *flags != 0)
            .collect();
        Ok(Self { map, written })
    }

    /// Sets `flags` in the slots given (slot → flags), keeping what is set.
    pub fn cover(&mut self, wanted: &BTreeMap<u32, u32>) -> Result<(), DataplaneError> {
        for (slot, flags) in wanted {
            let now = self.written.get(slot).copied().unwrap_or(0);
            if now | flags != now {
                self.write(*slot, now | flags)?;
            }
        }
        Ok(())
    }

    /// Makes the filter exactly `wanted`: clears what no address needs.
    pub fn trim(&mut self, wanted: &BTreeMap<u32, u32>) -> Result<(), DataplaneError> {
        self.cover(wanted)?;
        let stale: Vec<(u32, u32)> = self
            .written
            .iter()
            .filter(|(slot, flags)| wanted.get(slot) != Some(flags))
            .map(|(slot, _)| (*slot, wanted.get(slot).copied().unwrap_or(0)))
            .collect();
        for (slot, flags) in stale {
            self.write(slot, flags)?;
        }
        Ok(())
    }

    fn write(&mut self, slot: u32, flags: u32) -> Result<(), DataplaneError> {
        debug_assert!(slot < ADDRESS_SLOTS);
        self.map
            .set(slot, flags, 0)
            .map_err(map_err(names::ADDRESSES))?;
        if flags == 0 {
            self.written.remove(&slot);
        } else {
            self.written.insert(slot, flags);
        }
        Ok(())
    }
}

/// `FO_SETTINGS`: flow lifetimes and the flood guard's threshold.
pub struct SettingsMap(Array<MapData, Settings>);

impl SettingsMap {
    pub fn open(source: &mut impl MapSource) -> Result<Self, DataplaneError> {
        let map = source.take(names::SETTINGS)?;
        Ok(Self(
            Array::try_from(map).map_err(map_err(names::SETTINGS))?,
        ))
    }

    pub fn set(&mut self, value: &Settings) -> Result<(), DataplaneError> {
        self.0.set(0, value, 0).map_err(map_err(names::SETTINGS))
    }

    pub fn get(&self) -> Result<Settings, DataplaneError> {
        self.0.get(&0, 0).map_err(map_err(names::SETTINGS))
    }
}
