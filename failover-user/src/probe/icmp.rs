//! ICMP echo probes over a raw socket.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use super::{ProbeError, Step};

/// ICMP echo over a raw socket (root). Runs on the blocking pool with the
/// probe timeout as receive timeout.
pub(super) async fn icmp(address: Ipv4Addr, limit: Duration) -> Result<(), ProbeError> {
    tokio::task::spawn_blocking(move || icmp_blocking(address, limit))
        .await
        .map_err(|e| ProbeError::io(Step::IcmpTask)(std::io::Error::other(e)))?
}

pub(super) fn icmp_blocking(address: Ipv4Addr, limit: Duration) -> Result<(), ProbeError> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static SEQUENCE: AtomicU16 = AtomicU16::new(1);
    let ident = (std::process::id() & 0xffff) as u16;
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);

    // SAFETY: plain socket calls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        );
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

unsafe fn icmp_exchange(
    fd: i32,
    address: Ipv4Addr,
    ident: u16,
    sequence: u16,
    limit: Duration,
) -> Result<(), ProbeError> {
    let mut request = [0u8; 16];
    request[0] = 8; // echo request
    request[4..6].copy_from_slice(&ident.to_be_bytes());
    request[6..8].copy_from_slice(&sequence.to_be_bytes());
    request[8..16].copy_from_slice(b"failover");
    let check = failover_common::csum::checksum_be(&request, 0);
    request[2..4].copy_from_slice(&check.to_be_bytes());

    let target = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(address.octets()),
        },
        sin_zero: [0; 8],
    };
    let deadline = Instant::now() + limit;
    // SAFETY: valid buffers and lengths.
    unsafe {
        let sent = libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const target).cast(),
            size_of::<libc::sockaddr_in>() as u32,
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
            let n = libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0);
            if n < 0 {
                return Err(ProbeError::NoEchoReply);
            }
            let packet = &buffer[..n as usize];
            // Raw sockets deliver the IP header; skip it.
            let ihl = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
            let Some(reply) = packet.get(ihl..ihl + 8) else {
                continue;
            };
            let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
            if reply[0] == 0
                && from == address
                && reply[4..6] == ident.to_be_bytes()
                && reply[6..8] == sequence.to_be_bytes()
            {
                return Ok(());
            }
        }
    }
}
