//! Following the agent's log file as it grows.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use anyhow::Context as _;

/// Reads complete lines appended to a file since the last call.
pub(super) struct LogTail {
    file: File,
    pending: Vec<u8>,
}

impl LogTail {
    pub(super) fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file,
            pending: Vec::new(),
        })
    }

    pub(super) fn new_lines(&mut self) -> Vec<String> {
        let mut buf = Vec::new();
        // Bounded: the file only grows by what the agent logs.
        if self.file.read_to_end(&mut buf).is_err() {
            let _ = self.file.seek(SeekFrom::End(0));
            return Vec::new();
        }
        self.pending.extend_from_slice(&buf);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
