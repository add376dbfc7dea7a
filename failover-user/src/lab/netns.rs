//! Network namespaces and veth links that clean up after themselves.
//!
//! Every namespace is named `fo-<role>-<pid>-<n>`, created with iproute2 and
//! deleted in `Drop` (also on panic), which also destroys its interfaces and
//! detaches any XDP program on them. Code runs inside a namespace on a thread
//! that `setns(CLONE_NEWNET)`s into it, never through `ip netns exec` (which
//! remounts /sys and hides bpffs).

use std::{
    fs::File,
    os::fd::{AsRawFd, RawFd},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use crate::dataplane::netdev::{self, Offload};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A network namespace owned by the test.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `fo-<role>-<pid>-<n>` with loopback up. Panics if it cannot:
    /// a privileged test that cannot set itself up must fail, not skip.
    pub fn new(role: &str) -> Self {
        let name = format!(
            "fo-{role}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`; panics with iproute2's message on failure.
    pub fn ip(&self, args: &[&str]) {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    /// Opens the namespace (`/run/netns/<name>`), for a thread or a child
    /// process that has to join it without borrowing this guard.
    pub fn open(&self) -> std::io::Result<NsFd> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
        Ok(NsFd(file))
    }

    /// Joins this namespace on the calling thread. Only for threads the test
    /// spawned for this purpose.
    pub fn enter(&self) {
        self.open()
            .and_then(|ns| ns.enter())
            .unwrap_or_else(|e| panic!("setns {}: {e}", self.name));
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its result.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter();
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Writes a sysctl under /proc/sys (e.g. "net/ipv4/conf/all/forwarding").
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(|| {
            std::fs::write(format!("/proc/sys/{key}"), value)
                .unwrap_or_else(|e| panic!("sysctl {key}={value} in {}: {e}", self.name));
        });
    }

    /// Turns off transmit checksum offload on `interface`: locally generated
    /// packets are CHECKSUM_PARTIAL, and once XDP rewrites them in native
    /// mode the receiver drops them as bad checksums (veth pitfall 3).
    pub fn disable_tx_checksum(&self, interface: &str) {
        self.run(|| netdev::set_offload(interface, Offload::TxChecksum, false))
            .unwrap_or_else(|e| panic!("tx checksum off on {interface} in {}: {e}", self.name));
    }

    /// Turns transmit checksum offload back on (as `ip link add` leaves a
    /// veth).
    pub fn enable_tx_checksum(&self, interface: &str) {
        self.run(|| netdev::set_offload(interface, Offload::TxChecksum, true))
            .unwrap_or_else(|e| panic!("tx checksum on for {interface} in {}: {e}", self.name));
    }

    /// The interfaces of this namespace but loopback.
    pub fn interfaces(&self) -> Vec<String> {
        // Not /sys/class/net: that shows the namespace sysfs was mounted in.
        self.run(|| {
            let mut names = Vec::new();
            // SAFETY: if_nameindex returns an array ended by a zero entry,
            // freed with if_freenameindex.
            unsafe {
                let list = libc::if_nameindex();
                if list.is_null() {
                    return names;
                }
                let mut entry = list;
                while (*entry).if_index != 0 {
                    let name = std::ffi::CStr::from_ptr((*entry).if_name).to_string_lossy();
                    if name != "lo" {
                        names.push(name.into_owned());
                    }
                    entry = entry.add(1);
                }
                libc::if_freenameindex(list);
            }
            names
        })
    }

    /// Turns GRO on for `interface`: on a veth it gives the receive queue
    /// NAPI, which frames sent with `ndo_xdp_xmit` (XDP redirect or
    /// live-frames test runs) need when no native XDP program is attached.
    pub fn enable_gro(&self, interface: &str) {
        self.run(|| netdev::set_offload(interface, Offload::Gro, true))
            .unwrap_or_else(|e| panic!("gro on for {interface} in {}: {e}", self.name));
    }

    /// The index of `interface` inside this namespace.
    pub fn ifindex(&self, interface: &str) -> u32 {
        let name = std::ffi::CString::new(interface).unwrap();
        let index = self.run(|| unsafe { libc::if_nametoindex(name.as_ptr()) });
        assert_ne!(index, 0, "no interface {interface} in {}", self.name);
        index
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An open network namespace ([`NetNs::open`]), for joining it from a thread
/// or a child process.
pub struct NsFd(File);

impl NsFd {
    /// Joins the namespace on the calling thread only.
    pub fn enter(&self) -> std::io::Result<()> {
        // SAFETY: a valid namespace fd; affects only the calling thread.
        if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for NsFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Creates a veth pair with one end in each namespace, both up.
pub fn veth(a: (&NetNs, &str), b: (&NetNs, &str)) {
    a.0.ip(&[
        "link",
        "add",
        a.1,
        "type",
        "veth",
        "peer",
        "name",
        b.1,
        "netns",
        b.0.name(),
    ]);
    a.0.ip(&["link", "set", a.1, "up"]);
    b.0.ip(&["link", "set", b.1, "up"]);
}

fn run_checked(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}
