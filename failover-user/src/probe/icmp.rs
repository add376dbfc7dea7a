//! ICMP and ICMPv6 echo probes over a raw socket.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use super::{ProbeError, Step};

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const ECHO6_REQUEST: u8 = 128;
const ECHO6_REPLY: u8 = 129;

/// ICMP echo over a raw socket (root). Runs on the blocking pool with the
/// probe timeout as receive timeout.
pub(super) async fn icmp(address: IpAddr, limit: Duration) -> Result<(), ProbeError> {
    tokio::task::spawn_blocking(move || icmp_blocking(address, limit))
        .await
        .map_err(|e| ProbeError::io(Step::IcmpTask)(std::io::Error::other(e)))?
}

pub(super) fn icmp_blocking(address: IpAddr, limit: Duration) -> Result<(), ProbeError> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static SEQUENCE: AtomicU16 = AtomicU16::new(1);
    let ident = (std::process::id() & 0xffff) as u16;
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let (domain, protocol) = match address {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    // SAFETY: plain socket calls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol);
        if fd < 0 {
            return Err(ProbeError::io(Step::IcmpSocket)(
                std::io::Error::last_os_error(),
            ));
        }
        let result = icmp_exchange(fd, address, ident, sequence, limit);
        libc::close(fd);
        result
    }
}

/// The echo request. ICMPv6's checksum covers a pseudo-header the kernel
/// fills in for raw ICMPv6 sockets; ICMP's is ours.
fn request(address: IpAddr, ident: u16, sequence: u16) -> [u8; 16] {
    let mut request = [0u8; 16];
    request[0] = if address.is_ipv4() {
        ECHO_REQUEST
    } else {
        ECHO6_REQUEST
    };
    request[4..6].copy_from_slice(&ident.to_be_bytes());
    request[6..8].copy_from_slice(&sequence.to_be_bytes());
    request[8..16].copy_from_slice(b"failover");
    if address.is_ipv4() {
        let check = failover_common::csum::checksum_be(&request, 0);
        request[2..4].copy_from_slice(&check.to_be_bytes());
    }
    request
}

/// A socket address for `address` (port 0), and its length.
fn socket_address(address: IpAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match address {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            (storage, size_of::<libc::sockaddr_in>() as u32)
        }
        IpAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_addr.s6_addr = v6.octets();
            (storage, size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

/// Whether a received packet is our echo's reply from `address`. An ICMP
/// raw socket delivers the IP header, an ICMPv6 one does not (its source
/// comes from `from`).
fn is_reply(
    address: IpAddr,
    packet: &[u8],
    from: &libc::sockaddr_storage,
    ident: u16,
    sequence: u16,
) -> bool {
    let (reply, sender, kind) = match address {
        IpAddr::V4(_) => {
            let ihl = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
            let Some(reply) = packet.get(ihl..ihl + 8) else {
                return false;
            };
            let sender = IpAddr::from(Ipv4Addr::new(
                packet[12], packet[13], packet[14], packet[15],
            ));
            (reply, sender, ECHO_REPLY)
        }
        IpAddr::V6(_) => {
            let Some(reply) = packet.get(..8) else {
                return false;
            };
            // SAFETY: the kernel wrote a sockaddr_in6 for this socket.
            let sin6 =
                unsafe { &*(from as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            (
                reply,
                IpAddr::from(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                ECHO6_REPLY,
            )
        }
    };
    reply[0] == kind
        && sender == address
        && reply[4..6] == ident.to_be_bytes()
        && reply[6..8] == sequence.to_be_bytes()
}

unsafe fn icmp_exchange(
    fd: i32,
    address: IpAddr,
    ident: u16,
    sequence: u16,
    limit: Duration,
) -> Result<(), ProbeError> {
    let request = request(address, ident, sequence);
    let (target, target_len) = socket_address(address);
    let deadline = Instant::now() + limit;
    // SAFETY: valid buffers and lengths.
    unsafe {
        let sent = libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const target).cast(),
            target_len,
        );
        if sent < 0 {
            return Err(ProbeError::io(Step::Send)(std::io::Error::last_os_error()));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProbeError::NoEchoReply);
            }
            let tv = libc::timeval {
                tv_sec: left.as_secs() as i64,
                tv_usec: i64::from(left.subsec_micros()).max(1),
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            );
            let mut buffer = [0u8; 1500];
            let mut from: libc::sockaddr_storage = std::mem::zeroed();
            let mut from_len = size_of::<libc::sockaddr_storage>() as u32;
            let n = libc::recvfrom(
                fd,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
                (&raw mut from).cast(),
                &raw mut from_len,
            );
            if n < 0 {
                return Err(ProbeError::NoEchoReply);
            }
            if is_reply(address, &buffer[..n as usize], &from, ident, sequence) {
                return Ok(());
            }
        }
    }
}
