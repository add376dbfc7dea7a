//! One agent per pin directory. Two agents on the same maps would undo each
//! other's decisions, so the agent holds an exclusive `flock` on the pin
//! directory for its whole life; a second one is refused and told the
//! holder's pid (from /proc/locks). The kernel drops the lock when the
//! holder exits, however it exits.
//!
//! The pid file is written only once the lock is held, removed at exit only
//! if it still names this process, and `failover failback --pid-file`
//! checks that the pid is a `failover run` before signalling it.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use crate::{dataplane::bpffs, dataplane::error::DataplaneError};

/// Starting the agent on a pin directory failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another failover agent{} runs on pin directory {pin_dir}: stop it first, or give this one another pin_dir",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Held {
        pin_dir: PathBuf,
        holder: Option<u32>,
    },
    #[error("locking pin directory {pin_dir}")]
    Io {
        pin_dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Prepare(#[from] DataplaneError),
}

/// The lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct PinDirLock {
    _dir: File,
}

impl PinDirLock {
    /// Creates the pin directory if needed (mounting bpffs under
    /// /sys/fs/bpf if it is missing, refused in a private mount namespace
    /// unless `allow_private`) and locks it.
    pub fn acquire(pin_dir: &Path, allow_private: bool) -> Result<Self, LockError> {
        bpffs::prepare_pin_dir_for_agent(pin_dir, allow_private)?;
        let io_err = |source| LockError::Io {
            pin_dir: pin_dir.to_owned(),
            source,
        };
        let dir = File::open(pin_dir).map_err(io_err)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Self { _dir: dir });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err(err));
        }
        let holder = dir.metadata().ok().and_then(|meta| lock_holder(&meta));
        Err(LockError::Held {
            pin_dir: pin_dir.to_owned(),
            holder,
        })
    }
}

/// The pid holding a flock on the file with this metadata, from
/// /proc/locks (`1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF`,
/// major and minor in hex).
fn lock_holder(meta: &std::fs::Metadata) -> Option<u32> {
    let dev = meta.dev();
    let wanted = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str()))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}

/// Writes our pid to `path` (call with the lock held).
pub fn write_pid_file(path: &Path) -> io::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
}

/// Removes `path` if it still names this process (another agent may have
/// written its own since).
pub fn remove_pid_file(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether `pid` is a running `failover run` (by its command line).
pub fn is_agent(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let program = args.first().and_then(|arg0| {
        Path::new(std::str::from_utf8(arg0).ok()?)
            .file_name()?
            .to_str()
            .map(str::to_owned)
    });
    program.as_deref() == Some("failover") && args.iter().skip(1).any(|arg| *arg == b"run")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_is_not_an_agent() {
        assert!(!is_agent(std::process::id()));
        assert!(!is_agent(u32::MAX));
    }
}
