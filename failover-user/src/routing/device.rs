//! The device the announcements route to: a TUN device held open by the
//! agent and by nothing else. The kernel destroys it when the agent's
//! process ends, however it ends, and with it every route through it: the
//! routing daemon sees them go and withdraws them. A crashed agent stops
//! attracting traffic without anyone's help.

use std::{
    fs::{File, OpenOptions},
    io,
    os::fd::AsRawFd,
};

/// `_IOW('T', 202, int)`: attach the open file to a (new) TUN device.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Refuse a device that exists already (a persistent one would outlive
/// the agent, and its routes with it).
const IFF_TUN_EXCL: libc::c_int = 0x8000;

pub struct LivenessDevice {
    /// Closing it destroys the device.
    _file: File,
    name: String,
}

impl LivenessDevice {
    /// Creates TUN device `name`, owned by this process alone.
    pub fn create(name: &str) -> io::Result<Self> {
        if name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is longer than an interface name can be"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "opening /dev/net/tun (the kernel's tun support; `modprobe tun`): {err}"
                    ),
                )
            })?;
        // SAFETY: a zeroed ifreq with the name and flags set, passed to the
        // ioctl it is made for, on our own open file.
        let result = unsafe {
            let mut request: libc::ifreq = std::mem::zeroed();
            for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
                *slot = byte as libc::c_char;
            }
            request.ifr_ifru.ifru_flags =
                (libc::IFF_TUN | libc::IFF_NO_PI | IFF_TUN_EXCL) as libc::c_short;
            libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut request)
        };
        if result < 0 {
            let err = io::Error::last_os_error();
            let hint = match err.raw_os_error() {
                Some(libc::EBUSY | libc::EEXIST) => {
                    "; a device of that name exists already (another agent, or `ip tuntap add`): \
                     remove it or set [routing] device"
                }
                Some(libc::EPERM) => "; the agent needs CAP_NET_ADMIN",
                _ => "",
            };
            return Err(io::Error::new(
                err.kind(),
                format!("creating TUN device {name:?}: {err}{hint}"),
            ));
        }
        Ok(Self {
            _file: file,
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}
