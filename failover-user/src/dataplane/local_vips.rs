//! A VIP that is also an address of the edge host. The first reply to a
//! new client whose neighbour is not resolved yet goes through the kernel
//! stack rewritten (source: the VIP), and the kernel drops a forwarded
//! packet whose source is one of its own addresses as a martian — unless
//! `accept_local` is on for the interface it arrives on. Then the client's
//! first SYN-ACK (and each retransmission, as the neighbour stays
//! unresolved) is lost and its connection times out.

use std::{collections::BTreeSet, io, net::Ipv4Addr};

/// IPv4 addresses of this host, in the calling thread's network namespace.
pub fn local_ipv4() -> io::Result<BTreeSet<Ipv4Addr>> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = BTreeSet::new();
    let mut cursor = addrs;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null()
            // SAFETY: a valid sockaddr of the list.
            && i32::from(unsafe { (*entry.ifa_addr).sa_family }) == libc::AF_INET
        {
            // SAFETY: an AF_INET sockaddr is a sockaddr_in.
            let sin = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
            found.insert(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()));
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(addrs) };
    Ok(found)
}

fn accept_local_path(interface: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{interface}/accept_local")
}

/// Whether `accept_local` is on for `interface`.
pub fn accept_local(interface: &str) -> io::Result<bool> {
    Ok(std::fs::read_to_string(accept_local_path(interface))?.trim() != "0")
}

/// Turns `accept_local` on for `interface`.
pub fn set_accept_local(interface: &str) -> io::Result<()> {
    std::fs::write(accept_local_path(interface), "1")
}
