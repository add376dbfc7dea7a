//! Building test frames with correct checksums, and checking frames the data
//! path produced by full recomputation (never by incremental arithmetic).

use std::net::Ipv4Addr;

use failover_common::csum::{checksum_be, sum_be_words};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub const ETH_LEN: usize = 14;

/// Transport layer of a test frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    /// `checksum: false` sends a zero ("no checksum") UDP checksum.
    Udp {
        src_port: u16,
        dst_port: u16,
        checksum: bool,
    },
    /// Any other IP protocol, with raw bytes after the IP header.
    Other { proto: u8 },
    /// An ICMP error (`kind`, `code`, the 4 bytes after the checksum) about
    /// `about`, embedding the first `keep` bytes of its IP packet (the
    /// frame's payload is not used).
    IcmpError {
        kind: u8,
        code: u8,
        rest: u32,
        about: Box<Frame>,
        keep: usize,
    },
}

pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_PORT_UNREACHABLE: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// A frame description; [`Frame::build`] turns it into bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN id of a tag (802.1Q unless `vlan_proto` says 802.1ad).
    pub vlan: Option<u16>,
    /// The tag's protocol: 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    pub vlan_proto: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    pub id: u16,
    /// Raw `frag_off` field (flags and offset), host order.
    pub frag_off: u16,
    /// IPv4 options; padded to a multiple of 4 bytes.
    pub options: Vec<u8>,
    pub l4: L4,
    pub payload: Vec<u8>,
    /// TCP window.
    pub tcp_window: u16,
    /// The L4 checksum as a local sender with transmit checksum offload
    /// leaves it: the pseudo-header sum only, for the device to complete.
    pub partial_checksum: bool,
}

impl Frame {
    pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Self {
        Self::new(
            src.0,
            dst.0,
            L4::Tcp {
                src_port: src.1,
                dst_port: dst.1,
                flags,
                seq: 0x0102_0304,
                ack: if flags & TCP_ACK != 0 { 0x0a0b_0c0d } else { 0 },
            },
        )
    }

    pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Self {
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

    /// An ICMP error from `src` to `dst` about `about` (see [`L4::IcmpError`]).
    pub fn icmp_error(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        (kind, code, rest): (u8, u8, u32),
        about: &Frame,
        keep: usize,
    ) -> Self {
        Self::new(
            src,
            dst,
            L4::IcmpError {
                kind,
                code,
                rest,
                about: Box::new(about.clone()),
                keep,
            },
        )
    }

    /// The IP packet: the frame without its Ethernet header and tag.
    pub fn ip_packet(&self) -> Vec<u8> {
        let frame = self.build();
        let l2 = ETH_LEN + if self.vlan.is_some() { 4 } else { 0 };
        frame[l2..].to_vec()
    }

    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Self {
        Self {
            dst_mac: [0x02, 0, 0, 0, 0, 0xaa],
            src_mac: [0x02, 0, 0, 0, 0, 0xbb],
            vlan: None,
            vlan_proto: 0x8100,
            src,
            dst,
            ttl: 64,
            tos: 0,
            id: 0x1234,
            frag_off: 0x4000, // DF
            options: Vec::new(),
            l4,
            payload: b"failover test payload".to_vec(),
            tcp_window: 64240,
            partial_checksum: false,
        }
    }

    /// With the checksum a local sender with offload leaves (see the field).
    pub fn partial(mut self) -> Self {
        self.partial_checksum = true;
        self
    }

    pub fn with_payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// The same frame with its destination address and port replaced.
    pub fn with_dst(mut self, addr: Ipv4Addr, port: u16) -> Self {
        self.dst = addr;
        match &mut self.l4 {
            L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } => *dst_port = port,
            L4::Other { .. } | L4::IcmpError { .. } => {}
        }
        self
    }

    /// The same frame with its source address and port replaced.
    pub fn with_src(mut self, addr: Ipv4Addr, port: u16) -> Self {
        self.src = addr;
        match &mut self.l4 {
            L4::Tcp { src_port, .. } | L4::Udp { src_port, .. } => *src_port = port,
            L4::Other { .. } | L4::IcmpError { .. } => {}
        }
        self
    }

    /// The frame as a router forwards it: TTL one lower, new MACs.
    pub fn routed(mut self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Self {
        self.ttl -= 1;
        self.macs(src_mac, dst_mac)
    }

    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        match self.l4 {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
                seq,
                ack,
            } => {
                let mut h = Vec::with_capacity(20 + self.payload.len());
                h.extend_from_slice(&src_port.to_be_bytes());
                h.extend_from_slice(&dst_port.to_be_bytes());
                h.extend_from_slice(&seq.to_be_bytes());
                h.extend_from_slice(&ack.to_be_bytes());
                h.push(5 << 4);
                h.push(flags);
                h.extend_from_slice(&self.tcp_window.to_be_bytes());
                h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
                h.extend_from_slice(&self.payload);
                (6, h)
            }
            L4::Udp {
                src_port, dst_port, ..
            } => {
                let len = (8 + self.payload.len()) as u16;
                let mut h = Vec::with_capacity(len as usize);
                h.extend_from_slice(&src_port.to_be_bytes());
                h.extend_from_slice(&dst_port.to_be_bytes());
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h.extend_from_slice(&self.payload);
                (17, h)
            }
            L4::Other { proto } => (proto, self.payload.clone()),
            L4::IcmpError {
                kind,
                code,
                rest,
                ref about,
                keep,
            } => {
                let embedded = about.ip_packet();
                let mut h = vec![kind, code, 0, 0];
                h.extend_from_slice(&rest.to_be_bytes());
                h.extend_from_slice(&embedded[..keep.min(embedded.len())]);
                let check = checksum_be(&h, 0);
                h[2..4].copy_from_slice(&check.to_be_bytes());
                (1, h)
            }
        }
    }

    /// The frame's bytes with every checksum computed from scratch.
    pub fn build(&self) -> Vec<u8> {
        let (proto, mut l4) = self.l4_bytes();
        let mut options = self.options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0); // EOL padding
        }
        let ihl = 20 + options.len();
        let tot_len = (ihl + l4.len()) as u16;

        let mut ip = Vec::with_capacity(ihl);
        ip.push(0x40 | (ihl / 4) as u8);
        ip.push(self.tos);
        ip.extend_from_slice(&tot_len.to_be_bytes());
        ip.extend_from_slice(&self.id.to_be_bytes());
        ip.extend_from_slice(&self.frag_off.to_be_bytes());
        ip.push(self.ttl);
        ip.push(proto);
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        ip.extend_from_slice(&options);
        let check = checksum_be(&ip, 0);
        ip[10..12].copy_from_slice(&check.to_be_bytes());

        let pseudo = pseudo_header_sum(self.src, self.dst, proto, l4.len());
        let partial = failover_common::csum::fold(pseudo).to_be_bytes();
        match self.l4 {
            L4::Tcp { .. } if self.partial_checksum => l4[16..18].copy_from_slice(&partial),
            L4::Udp { checksum: true, .. } if self.partial_checksum => {
                l4[6..8].copy_from_slice(&partial)
            }
            L4::Tcp { .. } => {
                let check = checksum_be(&l4, pseudo);
                l4[16..18].copy_from_slice(&check.to_be_bytes());
            }
            L4::Udp { checksum: true, .. } => {
                let mut check = checksum_be(&l4, pseudo);
                if check == 0 {
                    check = 0xffff;
                }
                l4[6..8].copy_from_slice(&check.to_be_bytes());
            }
            _ => {}
        }

        let mut frame = Vec::with_capacity(ETH_LEN + 4 + ip.len() + l4.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        if let Some(vlan) = self.vlan {
            frame.extend_from_slice(&self.vlan_proto.to_be_bytes());
            frame.extend_from_slice(&vlan.to_be_bytes());
        }
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&l4);
        frame
    }
}

fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: usize) -> u64 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
    sum_be_words(&pseudo, 0)
}

/// The fields of a parsed IPv4 TCP/UDP frame that tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset of the IPv4 header in the frame.
    pub l3: usize,
    pub ihl: usize,
    pub tot_len: usize,
}

/// Parses an untagged or single-tagged IPv4 TCP/UDP frame; `None` otherwise.
pub fn parse(frame: &[u8]) -> Option<Parsed> {
    let mut l3 = ETH_LEN;
    let mut ether_type = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    let mut vlan = None;
    if ether_type == 0x8100 || ether_type == 0x88a8 {
        vlan = Some(u16::from_be_bytes(frame.get(14..16)?.try_into().ok()?));
        ether_type = u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?);
        l3 += 4;
    }
    if ether_type != 0x0800 {
        return None;
    }
    let ip = frame.get(l3..l3 + 20)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    if ip[0] >> 4 != 4 || ihl < 20 || tot_len < ihl || frame.len() < l3 + tot_len {
        return None;
    }
    let l4 = frame.get(l3 + ihl..l3 + tot_len)?;
    if (proto != 6 && proto != 17) || l4.len() < 8 {
        return None;
    }
    Some(Parsed {
        dst_mac: frame[0..6].try_into().ok()?,
        src_mac: frame[6..12].try_into().ok()?,
        vlan,
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        ttl: ip[8],
        proto,
        src_port: u16::from_be_bytes([l4[0], l4[1]]),
        dst_port: u16::from_be_bytes([l4[2], l4[3]]),
        l3,
        ihl,
        tot_len,
    })
}

/// An ICMP error frame (destination unreachable or time exceeded) about an
/// unfragmented TCP or UDP packet, as the tests read it: offsets into the
/// frame and the embedded packet's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcmpErrorFrame {
    /// The outer IPv4 header: offset, length, addresses, TTL.
    pub l3: usize,
    pub ihl: usize,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// Offset of the ICMP header, and of the datagram's end.
    pub icmp: usize,
    pub end: usize,
    /// The embedded IPv4 header: offset and length.
    pub inner: usize,
    pub inner_ihl: usize,
    pub inner_proto: u8,
    pub inner_src: (Ipv4Addr, u16),
    pub inner_dst: (Ipv4Addr, u16),
}

impl IcmpErrorFrame {
    /// Offset of the embedded transport header.
    pub fn inner_l4(&self) -> usize {
        self.inner + self.inner_ihl
    }
}

/// Parses an untagged or single-tagged ICMP error about an unfragmented TCP
/// or UDP packet with at least 8 bytes of its transport header embedded.
pub fn parse_icmp_error(frame: &[u8]) -> Option<IcmpErrorFrame> {
    let mut l3 = ETH_LEN;
    let mut ether_type = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if ether_type == 0x8100 || ether_type == 0x88a8 {
        ether_type = u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?);
        l3 += 4;
    }
    let ip = frame.get(l3..l3 + 20)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ether_type != 0x0800 || ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 1 || fragment {
        return None;
    }
    let end = l3 + tot_len;
    let icmp = l3 + ihl;
    if tot_len < ihl || frame.len() < end || end < icmp + 8 || ![3, 11].contains(&frame[icmp]) {
        return None;
    }
    let inner = icmp + 8;
    let header = frame.get(inner..inner + 20)?;
    let inner_ihl = usize::from(header[0] & 0x0f) * 4;
    let inner_fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
    let inner_proto = header[9];
    if header[0] >> 4 != 4 || inner_ihl < 20 || inner_fragment || ![6, 17].contains(&inner_proto) {
        return None;
    }
    let l4 = inner + inner_ihl;
    if end < l4 + 8 {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    Some(IcmpErrorFrame {
        l3,
        ihl,
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        ttl: ip[8],
        icmp,
        end,
        inner,
        inner_ihl,
        inner_proto,
        inner_src: (
            Ipv4Addr::new(header[12], header[13], header[14], header[15]),
            port(l4),
        ),
        inner_dst: (
            Ipv4Addr::new(header[16], header[17], header[18], header[19]),
            port(l4 + 2),
        ),
    })
}

/// The folded one's-complement sum of `bytes` (0xffff: a valid checksum
/// is among them).
pub fn residue(bytes: &[u8]) -> u16 {
    failover_common::csum::fold(sum_be_words(bytes, 0))
}

/// How far a frame's IPv4 and L4 checksums are from valid, as the folded
/// one's-complement sum over the covered bytes (0xffff means valid). Returns
/// (ip, l4); for a UDP zero checksum the L4 residue is reported as valid.
pub fn checksum_residues(frame: &[u8]) -> Option<(u16, u16)> {
    let p = parse(frame)?;
    let ip = &frame[p.l3..p.l3 + p.ihl];
    let ip_residue = failover_common::csum::fold(sum_be_words(ip, 0));
    let l4 = &frame[p.l3 + p.ihl..p.l3 + p.tot_len];
    if p.proto == 17 && l4[6..8] == [0, 0] {
        return Some((ip_residue, 0xffff));
    }
    let pseudo = pseudo_header_sum(p.src, p.dst, p.proto, l4.len());
    let l4_residue = failover_common::csum::fold(sum_be_words(l4, pseudo));
    Some((ip_residue, l4_residue))
}

/// Whether the frame's L4 checksum looks partial: it equals the
/// pseudo-header sum, as a local sender with transmit offload leaves it.
pub fn looks_partial(frame: &[u8]) -> bool {
    let Some(p) = parse(frame) else {
        return false;
    };
    let l4 = &frame[p.l3 + p.ihl..p.l3 + p.tot_len];
    let field = if p.proto == 6 { &l4[16..18] } else { &l4[6..8] };
    if field == [0, 0] || (p.proto == 6 && l4.len() < 20) {
        return false;
    }
    let pseudo = pseudo_header_sum(p.src, p.dst, p.proto, l4.len());
    field == failover_common::csum::fold(pseudo).to_be_bytes()
}

/// Whether every checksum of the frame is valid by full recomputation.
pub fn checksums_valid(frame: &[u8]) -> bool {
    checksum_residues(frame) == Some((0xffff, 0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_have_valid_checksums() {
        let a = (Ipv4Addr::new(192, 0, 2, 2), 40000);
        let b = (Ipv4Addr::new(203, 0, 113, 10), 80);
        assert!(checksums_valid(&Frame::tcp(a, b, TCP_SYN).build()));
        assert!(checksums_valid(&Frame::udp(a, b).build()));
        let mut with_options = Frame::tcp(a, b, TCP_ACK);
        with_options.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
        with_options.vlan = Some(100);
        let bytes = with_options.build();
        assert!(checksums_valid(&bytes));
        let parsed = parse(&bytes).unwrap();
        assert_eq!(
            (parsed.ihl, parsed.vlan, parsed.dst_port),
            (24, Some(100), 80)
        );
    }

    #[test]
    fn corruption_is_detected() {
        let a = (Ipv4Addr::new(192, 0, 2, 2), 40000);
        let b = (Ipv4Addr::new(203, 0, 113, 10), 80);
        let mut bytes = Frame::tcp(a, b, TCP_SYN).build();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert!(!checksums_valid(&bytes));
    }
}
