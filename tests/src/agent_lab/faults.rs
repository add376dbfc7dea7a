//! Faults a test puts under the running agent, each undone in `Drop`:
//! `FO_MAGLEV` full (the agent's next table write fails), and the pin
//! directory moved aside (the maps can no longer be opened by their paths,
//! as when the agent was pointed at another `pin_dir`).

use std::path::PathBuf;

use aya::maps::{HashMap, Map, MapData};
use failover_common::{MAGLEV_CHUNK_SLOTS, MAGLEV_CHUNKS, MaglevChunk, MaglevKey};

use super::AgentLab;

/// A service id no lab service has.
const JUNK_SERVICE: u32 = 0xdead;

/// `FO_MAGLEV` filled with chunks of a service no service has, until the
/// kernel refuses more; the junk is removed in `Drop`.
pub struct FullMaglevMap {
    map: HashMap<MapData, MaglevKey, MaglevChunk>,
    junk: Vec<MaglevKey>,
}

impl FullMaglevMap {
    pub fn fill(lab: &AgentLab) -> Self {
        let data = MapData::from_pin(lab.pin_dir().join("FO_MAGLEV")).expect("open FO_MAGLEV");
        let mut map = HashMap::try_from(Map::HashMap(data)).expect("FO_MAGLEV is a hash map");
        let mut junk = Vec::new();
        for chunk in 0..MAGLEV_CHUNKS + 1 {
            let key = MaglevKey {
                service_id: JUNK_SERVICE,
                generation: 0,
                chunk,
            };
            if map.insert(key, [0; MAGLEV_CHUNK_SLOTS], 0).is_err() {
                return Self { map, junk };
            }
            junk.push(key);
        }
        panic!("FO_MAGLEV took more entries than it has");
    }
}

impl Drop for FullMaglevMap {
    fn drop(&mut self) {
        for key in &self.junk {
            if let Err(e) = self.map.remove(key)
                && !std::thread::panicking()
            {
                panic!("removing the junk from FO_MAGLEV: {e}");
            }
        }
    }
}

/// The agent's pin directory renamed to a sibling; renamed back in `Drop`.
/// The data path goes on (the programs hold their maps), but nothing can
/// open the maps by their paths meanwhile.
pub struct PinsMovedAside {
    from: PathBuf,
    to: PathBuf,
}

impl PinsMovedAside {
    pub fn new(lab: &AgentLab) -> Self {
        let from = lab.pin_dir().to_owned();
        let mut name = from.file_name().expect("a pin directory's name").to_owned();
        name.push("-aside");
        let to = from.with_file_name(name);
        std::fs::rename(&from, &to)
            .unwrap_or_else(|e| panic!("rename {} aside: {e}", from.display()));
        Self { from, to }
    }
}

impl Drop for PinsMovedAside {
    fn drop(&mut self) {
        if let Err(e) = std::fs::rename(&self.to, &self.from) {
            if std::thread::panicking() {
                eprintln!("renaming {} back: {e}", self.to.display());
            } else {
                panic!("renaming {} back: {e}", self.to.display());
            }
        }
    }
}
