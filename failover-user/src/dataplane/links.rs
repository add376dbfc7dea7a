//! XDP attachments that outlive the agent: bpf_links pinned next to the maps
//! as `<pin_dir>/link_<interface>`.
//!
//! A pinned link keeps the program attached when the agent exits or dies
//! (fail-static), and a restarted agent replaces the program inside it
//! atomically. A link whose interface was deleted (and perhaps created
//! again) is severed: the kernel reports it attached to no interface, or to
//! another ifindex than the interface of that name now has. Such a pin is
//! replaced by a fresh attachment.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use tracing::{info, warn};

use super::{AttachMode, Dataplane, program_mut};
use crate::{PROGRAM_NAME, dataplane::error::DataplaneError};

/// What [`Dataplane::attach_pinned`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new pinned link, in this mode.
    New(AttachMode),
    /// The pinned link of an earlier agent, program replaced in place.
    Adopted,
    /// The pinned link was severed (its interface was deleted or
    /// recreated); a new one was attached in this mode.
    Reattached {
        mode: AttachMode,
        /// Interface the old link was attached to (0: none any more).
        was_ifindex: u32,
    },
}

pub fn link_pin_name(interface: &str) -> String {
    format!("link_{interface}")
}

/// The ifindex of an interface in the calling thread's network namespace.
pub fn interface_index(interface: &str) -> io::Result<u32> {
    let name =
        CString::new(interface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

impl Dataplane {
    /// Attaches the forwarding program to `interface` through a pinned
    /// bpf_link, so the program stays attached when the agent exits or dies
    /// (fail-static). An existing pin for that interface is adopted (the
    /// program replaced atomically in it: traffic never sees the interface
    /// without XDP), unless it is severed, then it is replaced.
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        mode: AttachMode,
    ) -> Result<Attached, DataplaneError> {
        let pin = self.pin_dir.join(link_pin_name(interface));
        let link_err = |source: io::Error| DataplaneError::Bpffs {
            path: pin.clone(),
            source,
        };
        let mut severed = None;
        if pin.exists() {
            let now = interface_index(interface).map_err(|source| DataplaneError::Interface {
                interface: interface.to_owned(),
                source,
            })?;
            let linked = pinned_link_ifindex(&pin).map_err(link_err)?;
            if linked == now {
                let pinned =
                    PinnedLink::from_pin(&pin).map_err(|e| link_err(io::Error::other(e)))?;
                let link = XdpLink::try_from(FdLink::from(pinned))
                    .map_err(|e| link_err(io::Error::other(e)))?;
                program_mut(&mut self.ebpf, PROGRAM_NAME)?
                    .attach_to_link(link)
                    .map_err(|source| DataplaneError::Attach {
                        interface: interface.to_owned(),
                        mode: "adopted link",
                        source,
                    })?;
                info!(
                    interface,
                    "adopted the pinned XDP link; program replaced in place"
                );
                return Ok(Attached::Adopted);
            }
            warn!(
                interface,
                pinned_ifindex = linked,
                ifindex = now,
                "the pinned XDP link is severed (the interface was deleted or recreated); attaching anew"
            );
            std::fs::remove_file(&pin).map_err(link_err)?;
            severed = Some(linked);
        }
        let used = self.attach(interface, mode)?;
        let (_, link_id) = self.links.pop().expect("attach recorded its link");
        let link = program_mut(&mut self.ebpf, PROGRAM_NAME)?
            .take_link(link_id)
            .map_err(|source| DataplaneError::Program {
                name: PROGRAM_NAME,
                source,
            })?;
        let fd_link = FdLink::try_from(link).map_err(|e| link_err(io::Error::other(e)))?;
        fd_link
            .pin(&pin)
            .map_err(|e| link_err(io::Error::other(e)))?;
        Ok(match severed {
            Some(was_ifindex) => Attached::Reattached {
                mode: used,
                was_ifindex,
            },
            None => Attached::New(used),
        })
    }
}

/// The ifindex an XDP link pinned at `pin` is attached to; 0 when its
/// interface is gone.
fn pinned_link_ifindex(pin: &Path) -> io::Result<u32> {
    let path = CString::new(pin.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let fd = bpf_obj_get(&path)?;
    // struct bpf_link_info: type, id, prog_id, then a union aligned to 8
    // whose xdp member starts with the ifindex.
    let mut info = [0u8; 64];
    bpf_obj_get_info(&fd, &mut info)?;
    Ok(u32::from_ne_bytes(
        info[16..20].try_into().expect("4 bytes"),
    ))
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn bpf_obj_get(path: &CString) -> io::Result<OwnedFd> {
    // union bpf_attr for BPF_OBJ_GET: pathname, bpf_fd, file_flags.
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let attr = Attr {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: attr is a valid bpf_attr prefix for this command.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const Attr,
            size_of::<Attr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel gave us this new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn bpf_obj_get_info(fd: &OwnedFd, info: &mut [u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // union bpf_attr for BPF_OBJ_GET_INFO_BY_FD: bpf_fd, info_len, info.
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: attr is a valid bpf_attr prefix; info is writable for info_len.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const Attr,
            size_of::<Attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
