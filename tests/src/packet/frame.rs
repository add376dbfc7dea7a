//! A test frame's description: Ethernet, optional VLAN tag, IPv4 header
//! fields and options, transport layer and payload; constructors and the
//! changes a forwarder makes.

use std::net::Ipv4Addr;

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
}
