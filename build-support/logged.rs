//! A command run with its whole output in a log file, quietly; a failure
//! shows only the log's end. Shared with `#[path]` by the eBPF build
//! (`ebpf.rs`, in build scripts) and by xtask, which cannot share a crate.

use std::{
    fs,
    path::Path,
    process::{Command, ExitStatus},
};

use anyhow::Context as _;

/// Lines of the log a failure shows.
pub const TAIL: usize = 40;

/// Runs `command` with stdout and stderr appended to a fresh `log_path`.
/// On failure: its status and the log's last [`TAIL`] lines.
pub fn run(command: &mut Command, log_path: &Path) -> anyhow::Result<Result<(), Failed>> {
    let log =
        fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let status = command
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if status.success() {
        return Ok(Ok(()));
    }
    let text = fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect();
    Ok(Err(Failed { status, tail }))
}

/// A logged command that failed.
pub struct Failed {
    pub status: ExitStatus,
    /// The log's last lines.
    pub tail: Vec<String>,
}
