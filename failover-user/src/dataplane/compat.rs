//! Pinned maps left by another build of failover: reused only when their
//! layout is this build's.
//!
//! The loader reuses a map pinned under the map's name whatever its layout,
//! so a pin from a build with other key or value sizes would be read and
//! written with the wrong layout. Every pin is checked against this build's
//! layout before loading, and a mismatch is refused with the remedy.

use std::path::Path;

use aya::maps::MapInfo;
use failover_common::{
    AdminRecord, Backend, CONNTRACK_ENTRIES, Counter, EGRESS_SLOTS, Egress, Flow, FlowKey,
    MAGLEV_CHUNKS, MAX_BACKENDS, MAX_SERVICES, MaglevChunk, MaglevKey, REDIRECT_DROP_ENTRIES,
    Service, ServiceKey, TrafficStats, names, programs,
    stats::{VERDICT_COUNT, reason},
};

use crate::dataplane::error::DataplaneError;

/// Key size, value size and entries of every map, as this build defines them.
fn layouts() -> [(&'static str, usize, usize, u32); 12] {
    [
        (
            names::SERVICES,
            size_of::<ServiceKey>(),
            size_of::<Service>(),
            MAX_SERVICES,
        ),
        (
            names::MAGLEV,
            size_of::<MaglevKey>(),
            size_of::<MaglevChunk>(),
            MAGLEV_CHUNKS,
        ),
        (names::BACKENDS, 4, size_of::<Backend>(), MAX_BACKENDS),
        (
            names::CONNTRACK,
            size_of::<FlowKey>(),
            size_of::<Flow>(),
            CONNTRACK_ENTRIES,
        ),
        (names::VERDICTS, 4, size_of::<Counter>(), VERDICT_COUNT),
        (names::REASONS, 4, size_of::<Counter>(), reason::COUNT),
        (
            names::BACKEND_STATS,
            4,
            size_of::<TrafficStats>(),
            MAX_BACKENDS,
        ),
        (
            names::SERVICE_STATS,
            4,
            size_of::<TrafficStats>(),
            MAX_SERVICES,
        ),
        (names::ADMIN, 4, size_of::<AdminRecord>(), MAX_BACKENDS),
        (names::EGRESS, 4, size_of::<Egress>(), EGRESS_SLOTS),
        (names::REDIRECT_DROPS, 4, 8, REDIRECT_DROP_ENTRIES),
        (names::PROGRAMS, 4, 4, programs::COUNT),
    ]
}

/// Refuses pins under `pin_dir` whose layout is not this build's.
pub fn check_pins(pin_dir: &Path) -> Result<(), DataplaneError> {
    for (name, key, value, entries) in layouts() {
        let path = pin_dir.join(name);
        if !path.exists() {
            continue;
        }
        let info =
            MapInfo::from_pin(&path).map_err(|source| DataplaneError::Map { name, source })?;
        let found = (
            info.key_size() as usize,
            info.value_size() as usize,
            info.max_entries(),
        );
        if found != (key, value, entries) {
            return Err(DataplaneError::IncompatiblePin {
                path,
                found: format!(
                    "key {} B, value {} B, {} entries",
                    found.0, found.1, found.2
                ),
                wanted: format!("key {key} B, value {value} B, {entries} entries"),
                pin_dir: pin_dir.to_owned(),
            });
        }
    }
    Ok(())
}
