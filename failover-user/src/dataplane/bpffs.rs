//! Making sure a BPF filesystem is mounted where maps get pinned.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

use crate::dataplane::error::DataplaneError;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `path` is on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    // SAFETY: valid C string and a zeroed statfs for the kernel to fill.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

/// Mounts bpffs on `mount_point` (normally /sys/fs/bpf) unless one is there.
/// Some minimal systems boot without it; pinning needs it.
pub fn ensure_mounted(mount_point: &Path) -> Result<(), DataplaneError> {
    let err = |source| DataplaneError::Bpffs {
        path: mount_point.to_owned(),
        source,
    };
    if is_bpffs(mount_point).map_err(err)? {
        return Ok(());
    }
    let target = CString::new(mount_point.as_os_str().as_bytes())
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: valid C strings; no mount data.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether this process is alone in its mount namespace (as under `ip
/// netns exec` or `unshare -m`, which make one for the command they run):
/// whatever it mounts there disappears when it exits.
pub fn alone_in_mount_namespace() -> bool {
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let Some(mine) = namespace("self") else {
        return false;
    };
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    !entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && *pid != me)
        .any(|pid| namespace(&pid).as_ref() == Some(&mine))
}

/// Makes sure the BPF filesystem that holds `pin_dir` is mounted and the
/// directory exists. Where bpffs is missing in a private mount namespace
/// (the agent was started with `ip netns exec`, which remounts /sys), a
/// bpffs mounted here would die with the agent, and the pins and the
/// attachments with it: that is refused unless `allow_private` says the
/// operator accepts losing fail-static.
pub fn prepare_pin_dir_for_agent(
    pin_dir: &Path,
    allow_private: bool,
) -> Result<(), DataplaneError> {
    let mount_point = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(mount_point)
        && !is_bpffs(mount_point).unwrap_or(false)
        && !allow_private
        && alone_in_mount_namespace()
    {
        return Err(DataplaneError::PrivatePins {
            pin_dir: pin_dir.to_owned(),
        });
    }
    prepare_pin_dir(pin_dir)
}

/// Makes sure the BPF filesystem that holds `pin_dir` is mounted and the
/// directory exists.
pub fn prepare_pin_dir(pin_dir: &Path) -> Result<(), DataplaneError> {
    let mount_point = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(mount_point) {
        ensure_mounted(mount_point)?;
    }
    std::fs::create_dir_all(pin_dir).map_err(|source| DataplaneError::Bpffs {
        path: pin_dir.to_owned(),
        source,
    })
}
