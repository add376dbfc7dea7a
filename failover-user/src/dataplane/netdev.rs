//! Facts about network interfaces from the kernel, by ioctl (no ethtool or
//! ip binary needed): names, drivers, offload settings.

use std::{ffi::CStr, io};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// An offload setting that is on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// Transmit checksum offload: a local sender leaves checksums partial.
    TxChecksum,
    /// Generic receive offload: on a veth it gives the receive queue NAPI.
    Gro,
}

impl Offload {
    const fn commands(self) -> (u32, u32) {
        match self {
            Self::TxChecksum => (ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM),
            Self::Gro => (ETHTOOL_GGRO, ETHTOOL_SGRO),
        }
    }
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_drvinfo` (only `driver` is read).
#[repr(C)]
struct EthtoolDrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// One SIOCETHTOOL call on `interface` (calling thread's netns).
fn ethtool(interface: &str, data: *mut libc::c_void) -> io::Result<()> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    for (dst, src) in req
        .name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain socket, ioctl with a correctly laid out ifreq whose data
    // points to a command struct that lives across the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut req);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Whether `offload` is on for `interface`.
pub fn offload(interface: &str, offload: Offload) -> io::Result<bool> {
    let mut value = EthtoolValue {
        cmd: offload.commands().0,
        data: 0,
    };
    ethtool(interface, (&raw mut value).cast())?;
    Ok(value.data != 0)
}

/// Turns `offload` on or off for `interface`.
pub fn set_offload(interface: &str, offload: Offload, on: bool) -> io::Result<()> {
    let mut value = EthtoolValue {
        cmd: offload.commands().1,
        data: u32::from(on),
    };
    ethtool(interface, (&raw mut value).cast())
}

/// The driver of `interface` (`veth`, `mlx5_core`, ...).
pub fn driver(interface: &str) -> io::Result<String> {
    // SAFETY: all-zero is a valid ethtool_drvinfo.
    let mut info: EthtoolDrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ethtool(interface, (&raw mut info).cast())?;
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// What a VLAN device says its driver is (the kernel's 8021q module).
const VLAN_DRIVER: &str = "802.1Q VLAN Support";

/// Whether a device with this driver is a VLAN device: frames sent out of
/// it get its tag from the kernel, which an XDP redirect bypasses (a VLAN
/// device takes no XDP frames at all).
pub fn is_vlan_driver(driver: &str) -> bool {
    driver == VLAN_DRIVER
}

/// The interfaces of the calling thread's netns: index and name.
pub fn interfaces() -> Vec<(u32, String)> {
    let mut found = Vec::new();
    // SAFETY: if_nameindex returns an array ended by a zero entry, or null;
    // it is freed once, after the names are copied.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return found;
        }
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            let name = CStr::from_ptr((*entry).if_name)
                .to_string_lossy()
                .into_owned();
            found.push(((*entry).if_index, name));
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    found
}

/// The name of interface `ifindex` in the calling thread's netns.
pub fn name_of(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: buf holds IFNAMSIZ bytes as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_devices_are_told_by_their_driver() {
        assert!(is_vlan_driver("802.1Q VLAN Support"));
        for other in ["veth", "mlx5_core", "bridge", "802.1Q"] {
            assert!(!is_vlan_driver(other), "{other}");
        }
    }

    #[test]
    fn the_loopback_interface_is_listed() {
        assert!(
            interfaces()
                .iter()
                .any(|(index, name)| *index == 1 && name == "lo")
        );
    }

    #[test]
    fn the_loopback_interface_is_known() {
        assert_eq!(name_of(1).as_deref(), Some("lo"));
        assert!(name_of(u32::MAX).is_none());
        assert!(driver("no-such-if0").is_err());
    }
}
