//! The per-packet pick of a backend for a new flow: compiled into the XDP
//! program and used by `failover inspect explain`, so the two cannot drift.
//!
//! The service's Maglev table slot for the flow's hash, or, without a table
//! (or when the slot's backend is not usable because the agent is between
//! two updates), the selection, probing past unusable entries.

use crate::{Backend, MAGLEV_CHUNK_SLOTS, MAX_SELECTION, MaglevKey, Service, usable_for_new};

/// Where the pick reads the maps: the program's lookups, or the pinned
/// maps from userspace.
pub trait PickMaps {
    fn backend(&self, id: u32) -> Option<Backend>;
    /// The backend id in slot `index` of the table chunk `key`.
    fn table_slot(&self, key: &MaglevKey, index: usize) -> Option<u32>;
}

/// How a backend was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// In slot `slot` of the service's Maglev table.
    Table { slot: u32 },
    /// In entry `entry` of the service's selection.
    Selection { entry: u32 },
}

/// A picked backend.
#[derive(Clone, Copy, Debug)]
pub struct Picked {
    pub backend_id: u32,
    pub backend: Backend,
    pub found: Found,
}

/// The pick for a flow whose hash is `hash`, and whether it met a stale
/// entry on the way (a table slot or selection entry whose backend is not
/// usable, counted as `event_stale_selection`). `None`: no usable backend.
#[inline(always)]
pub fn pick(maps: &impl PickMaps, service: &Service, hash: u32) -> (Option<Picked>, bool) {
    let usable = |id: u32| {
        maps.backend(id)
            .filter(|b| b.service_id == service.id && usable_for_new(b.state))
    };
    let mut stale = false;
    if service.table_size != 0 {
        let slot = hash % service.table_size;
        let key = MaglevKey {
            service_id: service.id,
            generation: service.table_generation,
            chunk: slot / MAGLEV_CHUNK_SLOTS as u32,
        };
        let index = (slot % MAGLEV_CHUNK_SLOTS as u32) as usize & (MAGLEV_CHUNK_SLOTS - 1);
        if let Some(backend_id) = maps.table_slot(&key, index)
            && let Some(backend) = usable(backend_id)
        {
            let found = Found::Table { slot };
            return (
                Some(Picked {
                    backend_id,
                    backend,
                    found,
                }),
                false,
            );
        }
        stale = true;
    }
    let len = service.selection_len;
    if len == 0 || len > MAX_SELECTION as u32 {
        return (None, stale);
    }
    let start = hash % len;
    let mut i = 0;
    while i < MAX_SELECTION as u32 && i < len {
        let entry = (start + i) % len;
        // LLVM knows entry < len <= 64 and would drop a plain mask, but the
        // verifier loses the bound after `%` (kernel 6.18): hide the value
        // from LLVM so the mask stays and proves the index in bounds.
        // SAFETY: reading a local.
        let index = unsafe { core::ptr::read_volatile(&entry) } as usize & (MAX_SELECTION - 1);
        let backend_id = service.selection[index];
        if let Some(backend) = usable(backend_id) {
            if i > 0 && service.table_size == 0 {
                stale = true;
            }
            let found = Found::Selection { entry };
            return (
                Some(Picked {
                    backend_id,
                    backend,
                    found,
                }),
                stale,
            );
        }
        i += 1;
    }
    (None, stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_state;

    /// Eight backends of service 1 (ids 0..8), `down` ones down; a table
    /// of one chunk naming `table[slot]`.
    struct Maps {
        down: &'static [u32],
        table: Option<[u32; MAGLEV_CHUNK_SLOTS]>,
    }

    impl PickMaps for Maps {
        fn backend(&self, id: u32) -> Option<Backend> {
            (id < 8).then(|| Backend {
                service_id: 1,
                state: if self.down.contains(&id) {
                    backend_state::DOWN
                } else {
                    backend_state::UP
                },
                ..Backend::default()
            })
        }

        fn table_slot(&self, key: &MaglevKey, index: usize) -> Option<u32> {
            (key.chunk == 0).then_some(self.table?[index])
        }
    }

    fn service(selection: &[u32], table_size: u32) -> Service {
        let mut service = Service::new(1);
        service.selection[..selection.len()].copy_from_slice(selection);
        service.selection_len = selection.len() as u32;
        service.table_size = table_size;
        service
    }

    #[test]
    fn a_table_slot_is_taken_when_its_backend_is_usable() {
        let maps = Maps {
            down: &[],
            table: Some([5; MAGLEV_CHUNK_SLOTS]),
        };
        let (picked, stale) = pick(&maps, &service(&[1, 2], 251), 1000);
        let picked = picked.unwrap();
        assert_eq!(picked.backend_id, 5);
        assert_eq!(picked.found, Found::Table { slot: 1000 % 251 });
        assert!(!stale);
    }

    #[test]
    fn a_stale_slot_falls_back_to_the_selection_and_is_reported() {
        let maps = Maps {
            down: &[5],
            table: Some([5; MAGLEV_CHUNK_SLOTS]),
        };
        let (picked, stale) = pick(&maps, &service(&[1, 2], 251), 1000);
        assert!(matches!(picked.unwrap().found, Found::Selection { .. }));
        assert!(stale);
    }

    #[test]
    fn the_selection_is_probed_past_unusable_entries() {
        let maps = Maps {
            down: &[1],
            table: None,
        };
        // hash 0 starts at entry 0 (backend 1, down) and takes entry 1.
        let (picked, stale) = pick(&maps, &service(&[1, 2, 3], 0), 0);
        let picked = picked.unwrap();
        assert_eq!(
            (picked.backend_id, picked.found),
            (2, Found::Selection { entry: 1 })
        );
        assert!(stale);
        let (picked, stale) = pick(&maps, &service(&[1, 2, 3], 0), 1);
        assert_eq!(picked.unwrap().backend_id, 2);
        assert!(!stale, "the first entry it met was usable");
    }

    #[test]
    fn no_usable_backend_and_bad_lengths_pick_nothing() {
        let maps = Maps {
            down: &[1, 2],
            table: None,
        };
        assert!(pick(&maps, &service(&[1, 2], 0), 7).0.is_none());
        assert!(pick(&maps, &service(&[], 0), 7).0.is_none());
        let mut too_long = service(&[3], 0);
        too_long.selection_len = MAX_SELECTION as u32 + 1;
        assert!(pick(&maps, &too_long, 7).0.is_none());
    }
}
