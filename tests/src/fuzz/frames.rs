//! The fuzzer's frames: well-formed ones of every shape an edge host sees
//! (client packets to services, replies from backends, ICMP errors either
//! way, other protocols; IPv6 is `ipv6`'s), then tags and
//! mutations.

use std::net::Ipv4Addr;

use super::{OTHER_ADDRS, SERVICES, VIP_2, icmp, icmp_replies};
use crate::{
    lab::{BACKEND_SIDE_MAC, CLIENT, CLIENT_MAC, CLIENT_SIDE_MAC, VIP, backend_mac},
    packet::{Frame, L4},
    rng::Rng,
};

/// A well-formed frame of one of the shapes an edge host sees, and whether
/// it arrives from the backends' side.
pub(super) fn well_formed(rng: &mut Rng) -> (Frame, bool) {
    let client_port = 1024 + rng.below(2000) as u16;
    let flags = rng.pick(&[0x02, 0x10, 0x18, 0x11, 0x04, 0x12, 0x00, 0xff]);
    let service = &SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let l4 = |src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), proto: u8| {
        if proto == 6 {
            Frame::tcp(src, dst, flags)
        } else {
            Frame::udp(src, dst)
        }
    };
    let (mut frame, from_backends) = match rng.below(9) {
        0..=2 => (
            l4(
                (CLIENT, client_port),
                (service.vip, service.port),
                service.proto,
            ),
            false,
        ),
        3 | 4 => {
            let (addr, port) = service.backends[rng.below(service.backends.len() as u64) as usize];
            let port = if rng.chance(80) {
                service.backend_port(port)
            } else {
                rng.pick(&[80, 53, 8080, 5353, 8181, 9999])
            };
            (l4((addr, port), (CLIENT, client_port), service.proto), true)
        }
        5 => {
            // A service's port on the wrong protocol, or another VIP's port.
            let proto = if service.proto == 6 { 17 } else { 6 };
            let vip = rng.pick(&[VIP, VIP_2]);
            (l4((CLIENT, client_port), (vip, service.port), proto), false)
        }
        6 => {
            let dst = rng.pick(&OTHER_ADDRS);
            (
                l4(
                    (CLIENT, client_port),
                    (dst, rng.pick(&[80, 22, 53])),
                    rng.pick(&[6, 17]),
                ),
                false,
            )
        }
        7 if rng.chance(70) => (icmp::error_frame(rng, client_port), rng.chance(90)),
        7 => (icmp_replies::error_frame(rng, client_port), rng.chance(10)),
        _ => {
            let proto = rng.pick(&[1, 47, 50, 58, 132]);
            let mut frame = Frame::new(CLIENT, rng.pick(&[VIP, VIP_2]), L4::Other { proto });
            frame.payload = vec![0; 8];
            (frame, false)
        }
    };
    frame.ttl = rng.pick(&[0, 1, 2, 64, 255]);
    frame.tos = rng.byte();
    if rng.chance(15) {
        frame.vlan = Some(rng.below(4095) as u16);
    }
    if rng.chance(15) {
        frame.options = (0..rng.below(40))
            .map(|_| rng.pick(&[0u8, 1, 0x94]))
            .collect();
    }
    if rng.chance(10) {
        frame.frag_off = rng.pick(&[0x2000, 0x0001, 0x2010]);
    }
    if let L4::Udp { checksum, .. } = &mut frame.l4
        && rng.chance(10)
    {
        *checksum = false;
    }
    // A local sender with transmit checksum offload.
    frame.partial_checksum = rng.chance(10);
    let len = rng.below(1500) as usize * usize::from(rng.chance(10)) + rng.below(200) as usize;
    frame.payload = (0..len).map(|_| rng.byte()).collect();
    frame = if from_backends {
        frame.macs(backend_mac(11), BACKEND_SIDE_MAC)
    } else {
        frame.macs(CLIENT_MAC, CLIENT_SIDE_MAC)
    };
    (frame, from_backends)
}

/// Other ether types and the outer tag of 802.1ad.
pub(super) fn retag(rng: &mut Rng, bytes: &mut [u8]) {
    match rng.below(20) {
        0 => bytes[12..14].copy_from_slice(&0x0806u16.to_be_bytes()), // ARP
        1 => bytes[12..14].copy_from_slice(&0x86ddu16.to_be_bytes()), // IPv6
        2 if bytes[12..14] == [0x81, 0x00] => bytes[12..14].copy_from_slice(&[0x88, 0xa8]),
        _ => {}
    }
}

/// Damages a frame: bit flips, truncation, garbage, header field overwrites.
pub(super) fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(bytes.len().min(60) as u64) as usize;
                bytes[i] = rng.byte();
            }
            2 => {
                let keep = 14 + rng.below(bytes.len() as u64 - 13) as usize;
                bytes.truncate(keep.min(bytes.len()));
            }
            3 => bytes.extend((0..rng.below(64)).map(|_| rng.byte())),
            4 if bytes.len() > 18 => bytes[14] = rng.byte(), // version/IHL (untagged)
            _ if bytes.len() > 18 => {
                let v = rng.next_u64() as u16; // total length (untagged)
                bytes[16..18].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
}
