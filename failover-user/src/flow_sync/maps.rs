//! The sync thread's own handles on the pinned maps (it never shares the
//! decision loop's).

use std::path::Path;

use crate::dataplane::{
    error::DataplaneError,
    flow_maps::Flows,
    maps::{Backends, MaglevTables, PinDir, Services},
};

pub struct LocalMaps {
    pub flows: Flows,
    pub services: Services,
    pub backends: Backends,
    pub tables: MaglevTables,
}

impl LocalMaps {
    pub fn open(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let mut source = PinDir(pin_dir);
        Ok(Self {
            flows: Flows::open(&mut source)?,
            services: Services::open(&mut source)?,
            backends: Backends::open(&mut source)?,
            tables: MaglevTables::open(&mut source)?,
        })
    }
}
