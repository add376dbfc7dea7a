//! IPv6 test frames: a description with extension headers, its bytes
//! (every checksum computed from scratch over the IPv6 pseudo-header), and
//! reading and checking frames the data path produced. Independent of the
//! program's own checksum code: sums are taken over whole byte strings.

use std::net::Ipv6Addr;

use failover_common::csum::{checksum_be, fold, sum_be_words};

use super::{ETH_LEN, L4};

pub const NEXT_HOP_BY_HOP: u8 = 0;
pub const NEXT_ROUTING: u8 = 43;
pub const NEXT_FRAGMENT: u8 = 44;
pub const NEXT_AUTH: u8 = 51;
pub const NEXT_DEST_OPTIONS: u8 = 60;
pub const PROTO_ICMPV6: u8 = 58;
pub const ICMPV6_DEST_UNREACHABLE: u8 = 1;
pub const ICMPV6_PORT_UNREACHABLE: u8 = 4;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ND_ROUTER_ADVERTISEMENT: u8 = 134;
pub const ND_NEIGHBOUR_SOLICITATION: u8 = 135;

/// An IPv6 frame; [`Frame6::build`] turns it into bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame6 {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
    /// Extension headers in order, by type (their bodies are built).
    pub extensions: Vec<u8>,
    pub l4: L4,
    pub payload: Vec<u8>,
    pub tcp_window: u16,
    /// The L4 checksum as a local sender with offload leaves it.
    pub partial_checksum: bool,
}

impl Frame6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, l4: L4) -> Self {
        Self {
            dst_mac: [0x02, 0, 0, 0, 0, 0xaa],
            src_mac: [0x02, 0, 0, 0, 0, 0xbb],
            vlan: None,
            src,
            dst,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x1_2345,
            extensions: Vec::new(),
            l4,
            payload: b"failover test payload".to_vec(),
            tcp_window: 64240,
            partial_checksum: false,
        }
    }

    pub fn tcp(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8) -> Self {
        Self::new(
            src.0,
            dst.0,
            L4::Tcp {
                src_port: src.1,
                dst_port: dst.1,
                flags,
                seq: 0x0102_0304,
                ack: if flags & super::TCP_ACK != 0 {
                    0x0a0b_0c0d
                } else {
                    0
                },
            },
        )
    }

    pub fn udp(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) -> Self {
        Self::new(
            src.0,
            dst.0,
            L4::Udp {
                src_port: src.1,
                dst_port: dst.1,
                checksum: true,
            },
        )
    }

    /// An ICMPv6 message of `kind` (code 0, four zero bytes, the payload).
    pub fn icmp(src: Ipv6Addr, dst: Ipv6Addr, kind: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Other {
                proto: PROTO_ICMPV6,
            },
        )
        .with_payload(&[kind, 0, 0, 0, 0, 0, 0, 0])
    }

    /// An ICMPv6 error (`kind`, `code`, the 4 bytes after the checksum)
    /// from `src` to `dst` about `about`, embedding the first `keep` bytes
    /// of its IPv6 packet.
    pub fn icmp_error(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        (kind, code, rest): (u8, u8, u32),
        about: &Frame6,
        keep: usize,
    ) -> Self {
        let embedded = about.ip_packet();
        let mut message = vec![kind, code, 0, 0];
        message.extend_from_slice(&rest.to_be_bytes());
        message.extend_from_slice(&embedded[..keep.min(embedded.len())]);
        let mut error = Self::new(
            src,
            dst,
            L4::Other {
                proto: PROTO_ICMPV6,
            },
        )
        .with_payload(&message);
        error.flow_label = 0;
        error
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn with_payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn with_extensions(mut self, extensions: &[u8]) -> Self {
        self.extensions = extensions.to_vec();
        self
    }

    pub fn partial(mut self) -> Self {
        self.partial_checksum = true;
        self
    }

    pub fn with_dst(mut self, addr: Ipv6Addr, port: u16) -> Self {
        self.dst = addr;
        if let L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } = &mut self.l4 {
            *dst_port = port;
        }
        self
    }

    pub fn with_src(mut self, addr: Ipv6Addr, port: u16) -> Self {
        self.src = addr;
        if let L4::Tcp { src_port, .. } | L4::Udp { src_port, .. } = &mut self.l4 {
            *src_port = port;
        }
        self
    }

    /// As a router forwards it: hop limit one lower, new MACs.
    pub fn routed(mut self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Self {
        self.hop_limit -= 1;
        self.macs(src_mac, dst_mac)
    }

    /// The IPv6 packet: the frame without its Ethernet header and tag.
    pub fn ip_packet(&self) -> Vec<u8> {
        let frame = self.build();
        frame[ETH_LEN + if self.vlan.is_some() { 4 } else { 0 }..].to_vec()
    }

    /// The frame's bytes with every checksum computed from scratch.
    pub fn build(&self) -> Vec<u8> {
        let (proto, mut l4) = transport(&self.l4, &self.payload, self.tcp_window);
        let pseudo = pseudo_header_sum(self.src, self.dst, proto, l4.len());
        let check_at = match self.l4 {
            L4::Tcp { .. } => Some(16),
            L4::Udp { checksum: true, .. } => Some(6),
            L4::Other {
                proto: PROTO_ICMPV6,
            } if l4.len() >= 4 => Some(2),
            _ => None,
        };
        if let Some(at) = check_at {
            let check = if self.partial_checksum {
                fold(pseudo)
            } else {
                match checksum_be(&l4, pseudo) {
                    0 if proto == 17 => 0xffff,
                    check => check,
                }
            };
            l4[at..at + 2].copy_from_slice(&check.to_be_bytes());
        }
        let mut chain = Vec::new();
        for (i, kind) in self.extensions.iter().enumerate() {
            let next = self.extensions.get(i + 1).copied().unwrap_or(proto);
            chain.extend_from_slice(&extension(*kind, next));
        }
        let first = self.extensions.first().copied().unwrap_or(proto);
        let payload_len = (chain.len() + l4.len()) as u16;

        let mut frame = Vec::with_capacity(ETH_LEN + 4 + 40 + usize::from(payload_len));
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        if let Some(vlan) = self.vlan {
            frame.extend_from_slice(&0x8100u16.to_be_bytes());
            frame.extend_from_slice(&vlan.to_be_bytes());
        }
        frame.extend_from_slice(&0x86ddu16.to_be_bytes());
        let vtc_flow =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xf_ffff);
        frame.extend_from_slice(&vtc_flow.to_be_bytes());
        frame.extend_from_slice(&payload_len.to_be_bytes());
        frame.push(first);
        frame.push(self.hop_limit);
        frame.extend_from_slice(&self.src.octets());
        frame.extend_from_slice(&self.dst.octets());
        frame.extend_from_slice(&chain);
        frame.extend_from_slice(&l4);
        frame
    }
}

/// A transport header and payload (TCP, UDP, raw bytes), checksum zero:
/// the same layout for both families.
pub(super) fn transport(l4: &L4, payload: &[u8], window: u16) -> (u8, Vec<u8>) {
    match *l4 {
        L4::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ack,
        } => {
            let mut h = Vec::with_capacity(20 + payload.len());
            h.extend_from_slice(&src_port.to_be_bytes());
            h.extend_from_slice(&dst_port.to_be_bytes());
            h.extend_from_slice(&seq.to_be_bytes());
            h.extend_from_slice(&ack.to_be_bytes());
            h.push(5 << 4);
            h.push(flags);
            h.extend_from_slice(&window.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
            h.extend_from_slice(payload);
            (6, h)
        }
        L4::Udp {
            src_port, dst_port, ..
        } => {
            let len = (8 + payload.len()) as u16;
            let mut h = Vec::with_capacity(usize::from(len));
            h.extend_from_slice(&src_port.to_be_bytes());
            h.extend_from_slice(&dst_port.to_be_bytes());
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(payload);
            (17, h)
        }
        L4::Other { proto } => (proto, payload.to_vec()),
        L4::IcmpError { .. } => panic!("an IPv4 ICMP error in an IPv6 frame"),
    }
}

/// An extension header of `kind` followed by `next`: 8 bytes (12 for
/// authentication), padded with PadN / zeros.
fn extension(kind: u8, next: u8) -> Vec<u8> {
    match kind {
        NEXT_HOP_BY_HOP | NEXT_DEST_OPTIONS => vec![next, 0, 1, 4, 0, 0, 0, 0],
        // Type 253 (experimental), no segments left.
        NEXT_ROUTING => vec![next, 0, 253, 0, 0, 0, 0, 0],
        // Offset 0 with "more fragments": a first fragment.
        NEXT_FRAGMENT => vec![next, 0, 0, 1, 0, 0, 0x12, 0x34],
        // 12 bytes: length 1 in 4-byte units after the first 8.
        NEXT_AUTH => vec![next, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        other => panic!("no extension header of type {other}"),
    }
}

pub fn pseudo_header_sum(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> u64 {
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(len as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    sum_be_words(&pseudo, 0)
}

/// The fields of an IPv6 frame that tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The transport protocol after the extension headers walked.
    pub proto: u8,
    /// Offset of the IPv6 header and of the transport header.
    pub l3: usize,
    pub l4: usize,
    /// Offset of the datagram's end.
    pub end: usize,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Parses an untagged or single-tagged IPv6 frame, walking hop-by-hop,
/// routing, destination options and authentication headers.
pub fn parse6(frame: &[u8]) -> Option<Parsed6> {
    let mut l3 = ETH_LEN;
    let mut ether_type = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if ether_type == 0x8100 || ether_type == 0x88a8 {
        ether_type = u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?);
        l3 += 4;
    }
    if ether_type != 0x86dd {
        return None;
    }
    let ip = frame.get(l3..l3 + 40)?;
    let end = l3 + 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ip[0] >> 4 != 6 || frame.len() < end {
        return None;
    }
    let mut next = ip[6];
    let mut at = l3 + 40;
    loop {
        let header = frame.get(at..at + 2)?;
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTIONS => {
                at += (usize::from(header[1]) + 1) * 8;
            }
            NEXT_AUTH => at += (usize::from(header[1]) + 2) * 4,
            _ => break,
        }
        next = header[0];
    }
    let ports = frame.get(at..at + 4).unwrap_or(&[0, 0, 0, 0]);
    let address = |from: usize| -> Ipv6Addr {
        let octets: [u8; 16] = ip[from..from + 16].try_into().unwrap();
        octets.into()
    };
    Some(Parsed6 {
        src: address(8),
        dst: address(24),
        hop_limit: ip[7],
        proto: next,
        l3,
        l4: at,
        end,
        src_port: u16::from_be_bytes([ports[0], ports[1]]),
        dst_port: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// How far the IPv6 frame's TCP, UDP or ICMPv6 checksum is from valid, as
/// the folded sum over the pseudo-header and segment (0xffff: valid);
/// `None` if it is no such frame.
pub fn residue6(frame: &[u8]) -> Option<u16> {
    let p = parse6(frame)?;
    if !matches!(p.proto, 6 | 17 | PROTO_ICMPV6) {
        return None;
    }
    let l4 = frame.get(p.l4..p.end)?;
    let pseudo = pseudo_header_sum(p.src, p.dst, p.proto, l4.len());
    Some(fold(sum_be_words(l4, pseudo)))
}

/// Whether the IPv6 frame's TCP, UDP or ICMPv6 checksum is valid by full
/// recomputation (IPv6 has no header checksum); `None` if it is no such
/// frame.
pub fn checksum_valid6(frame: &[u8]) -> Option<bool> {
    residue6(frame).map(|residue| residue == 0xffff)
}

/// Whether the IPv6 frame's TCP or UDP checksum is the pseudo-header sum
/// alone, as a local sender with offload leaves it.
pub fn looks_partial6(frame: &[u8]) -> bool {
    let Some(p) = parse6(frame) else {
        return false;
    };
    let at = match p.proto {
        6 => p.l4 + 16,
        17 => p.l4 + 6,
        _ => return false,
    };
    let (Some(field), Some(l4)) = (frame.get(at..at + 2), frame.get(p.l4..p.end)) else {
        return false;
    };
    let pseudo = pseudo_header_sum(p.src, p.dst, p.proto, l4.len());
    field != [0, 0] && field == fold(pseudo).to_be_bytes()
}
