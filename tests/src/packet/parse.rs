//! Reading frames the data path produced: IPv4 TCP/UDP, and ICMP errors.

use std::net::Ipv4Addr;

use super::ETH_LEN;

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
