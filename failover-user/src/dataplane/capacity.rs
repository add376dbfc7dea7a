//! What a configuration needs from the data path's fixed-size maps, checked
//! before anything is written: `check`, `run` and `reload` refuse a
//! configuration that does not fit and name the limit.

use failover_common::{
    MAGLEV_CHUNK_SLOTS, MAGLEV_CHUNKS, MAX_BACKENDS, MAX_SELECTION, MAX_SERVICES,
};

/// One service's demands.
#[derive(Clone, Debug)]
pub struct ServiceNeeds {
    pub name: String,
    pub backends: usize,
    /// Maglev slots; during a reload the larger of the old and new size
    /// (both are live while the service flips to the new table).
    pub table_size: u32,
}

impl ServiceNeeds {
    /// `FO_MAGLEV` values the service may hold: two generations of its
    /// table (the one in use and the one being written), none without a
    /// table or with a single backend (which never gets one).
    pub fn table_chunks(&self) -> u64 {
        if self.table_size == 0 || self.backends < 2 {
            return 0;
        }
        2 * u64::from(self.table_size.div_ceil(MAGLEV_CHUNK_SLOTS as u32))
    }
}

/// A configuration that does not fit the data path's maps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error("{count} services; the data path holds at most {max}")]
    Services { count: usize, max: u32 },
    #[error("service {service} has {count} backends; at most {max} per service")]
    BackendsPerService {
        service: String,
        count: usize,
        max: usize,
    },
    #[error("{count} backends in all services; the data path holds at most {max}")]
    Backends { count: usize, max: u32 },
    #[error(
        "the Maglev tables need {needed} chunks of {slots} slots (two generations per service; \
         largest: {largest}); the data path holds {max}: lower table_size (0 turns the table off)"
    )]
    TableChunks {
        needed: u64,
        max: u32,
        slots: usize,
        largest: String,
    },
}

/// Totals of a configuration against the maps' sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub services: usize,
    pub backends: usize,
    pub table_chunks: u64,
}

impl Capacity {
    /// The limits, for `failover check` and the README.
    pub const LIMITS: Capacity = Capacity {
        services: MAX_SERVICES as usize,
        backends: MAX_BACKENDS as usize,
        table_chunks: MAGLEV_CHUNKS as u64,
    };

    /// What `services` need, or why they do not fit.
    pub fn check(services: &[ServiceNeeds]) -> Result<Self, CapacityError> {
        if services.len() > MAX_SERVICES as usize {
            return Err(CapacityError::Services {
                count: services.len(),
                max: MAX_SERVICES,
            });
        }
        if let Some(big) = services.iter().find(|s| s.backends > MAX_SELECTION) {
            return Err(CapacityError::BackendsPerService {
                service: big.name.clone(),
                count: big.backends,
                max: MAX_SELECTION,
            });
        }
        let backends = services.iter().map(|s| s.backends).sum();
        if backends > MAX_BACKENDS as usize {
            return Err(CapacityError::Backends {
                count: backends,
                max: MAX_BACKENDS,
            });
        }
        let table_chunks = services.iter().map(ServiceNeeds::table_chunks).sum();
        if table_chunks > u64::from(MAGLEV_CHUNKS) {
            let largest = services
                .iter()
                .max_by_key(|s| s.table_chunks())
                .map(|s| format!("{} with table_size {}", s.name, s.table_size))
                .unwrap_or_default();
            return Err(CapacityError::TableChunks {
                needed: table_chunks,
                max: MAGLEV_CHUNKS,
                slots: MAGLEV_CHUNK_SLOTS,
                largest,
            });
        }
        Ok(Self {
            services: services.len(),
            backends,
            table_chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(n: usize, backends: usize, table_size: u32) -> Vec<ServiceNeeds> {
        (0..n)
            .map(|i| ServiceNeeds {
                name: format!("s{i}"),
                backends,
                table_size,
            })
            .collect()
    }

    #[test]
    fn every_limit_is_named() {
        assert!(matches!(
            Capacity::check(&needs(MAX_SERVICES as usize + 1, 1, 0)),
            Err(CapacityError::Services { .. })
        ));
        assert!(matches!(
            Capacity::check(&needs(1, MAX_SELECTION + 1, 0)),
            Err(CapacityError::BackendsPerService { .. })
        ));
        assert!(matches!(
            Capacity::check(&needs(100, 41, 0)),
            Err(CapacityError::Backends { count: 4100, .. })
        ));
        let err = Capacity::check(&needs(40, 2, 1_000_003)).unwrap_err();
        assert!(matches!(err, CapacityError::TableChunks { .. }));
        assert!(err.to_string().contains("table_size 1000003"), "{err}");
    }

    #[test]
    fn the_default_table_fits_every_service_slot() {
        let fits = Capacity::check(&needs(MAX_SERVICES as usize, 4, 16_411)).unwrap();
        assert_eq!(fits.table_chunks, 1024 * 2 * 65);
        // One backend, or no table, needs no chunks at all.
        assert_eq!(
            Capacity::check(&needs(10, 1, 16_411)).unwrap().table_chunks,
            0
        );
        assert_eq!(Capacity::check(&needs(10, 4, 0)).unwrap().table_chunks, 0);
    }
}
