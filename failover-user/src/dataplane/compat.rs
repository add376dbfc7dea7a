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
    ADDRESS_SLOTS, AdminRecord, Backend, Counter, EGRESS_SLOTS, Egress, Evidence, Flow, FlowKey,
    MAGLEV_CHUNKS, MAX_BACKENDS, MAX_SERVICES, MaglevChunk, MaglevKey, REDIRECT_DROP_ENTRIES,
    ReverseKey, ReverseNat, Service, ServiceKey, Settings, Spares, TimersRecord, TrafficStats,
    names, programs,
    stats::{VERDICT_COUNT, reason},
};
use tracing::info;

use crate::dataplane::error::DataplaneError;

/// Key size, value size and entries of every map, as this build defines them.
fn layouts(max_flows: u32) -> [(&'static str, usize, usize, u32); 18] {
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
            names::FLOWS,
            size_of::<FlowKey>(),
            size_of::<Flow>(),
            max_flows,
        ),
        (
            names::REVERSE,
            size_of::<ReverseKey>(),
            size_of::<ReverseNat>(),
            MAX_BACKENDS,
        ),
        (names::ADDRESSES, 4, 4, ADDRESS_SLOTS),
        (names::SETTINGS, 4, size_of::<Settings>(), 1),
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
        (names::EVIDENCE, 4, size_of::<Evidence>(), MAX_BACKENDS),
        (names::SPARES, 4, size_of::<Spares>(), MAX_SERVICES),
        (names::TIMERS, 4, size_of::<TimersRecord>(), MAX_BACKENDS),
    ]
}

/// Removes the pins of maps earlier layouts had and this one replaced (the
/// conntrack of two entries per flow): the programs that used them are
/// replaced next, and their flows are picked again by the table, which
/// decides the same way for every flow while it does not change.
pub fn remove_retired(pin_dir: &Path) -> Result<(), DataplaneError> {
    for name in names::RETIRED {
        let path = pin_dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|source| DataplaneError::Unpin {
                path: path.clone(),
                source,
            })?;
            info!(pin = %path.display(), "removed the flow table of an earlier layout; its flows are picked again by the table");
        }
    }
    Ok(())
}

/// Refuses pins under `pin_dir` whose layout is not this build's (the flow
/// table: `max_flows` entries); counters of another layout are removed.
pub fn check_pins(pin_dir: &Path, max_flows: u32) -> Result<(), DataplaneError> {
    let mut stale_counters = Vec::new();
    for (name, key, value, entries) in layouts(max_flows) {
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
        if name == names::FLOWS && (found.0, found.1) == (key, value) && found.2 != entries {
            return Err(DataplaneError::FlowTableSize {
                found: found.2,
                wanted: entries,
                pin_dir: pin_dir.to_owned(),
            });
        }
        if found != (key, value, entries) && names::REBUILT.contains(&name) {
            // Counters of another build count other things under these
            // indices: they start again from zero (once nothing else is
            // refused); the tail-call slots are filled again at load.
            stale_counters.push(path);
            continue;
        }
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
    for path in stale_counters {
        std::fs::remove_file(&path).map_err(|source| DataplaneError::Unpin {
            path: path.clone(),
            source,
        })?;
        info!(pin = %path.display(), "removed a counter or tail-call map of another build's layout; counters start again from zero");
    }
    Ok(())
}
