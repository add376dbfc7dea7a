//! A unique bpffs pin directory per test, removed in `Drop`.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    pub fn new() -> Self {
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/fo-test-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = failover::dataplane::remove_pins(&self.path);
    }
}
