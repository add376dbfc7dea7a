//! Packet access and header parsing.
//!
//! Contract: [`ptr_at`] is the only place that makes packet pointers, and it
//! proves `offset + size_of::<T>()` lies inside the frame. Header structs are
//! `packed(2)`: after a 14-byte Ethernet header the IP header is only 2-byte
//! aligned, so fields are never assumed 4-byte aligned. All multi-byte fields
//! hold wire (network) order; callers compare against `*_BE` constants or use
//! `u16::from_be` where a number is needed.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

use crate::family::{Family, V4};

pub const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6_BE: u16 = 0x86ddu16.to_be();
pub const ETH_P_8021Q_BE: u16 = 0x8100u16.to_be();
pub const ETH_P_8021AD_BE: u16 = 0x88a8u16.to_be();

/// IPv4 `frag_off` bits that mark any fragment: MF flag or a non-zero offset.
pub const IPV4_FRAGMENT_MASK_BE: u16 = 0x3fffu16.to_be();

pub const TCP_FLAG_FIN: u8 = 0x01;
pub const TCP_FLAG_SYN: u8 = 0x02;
pub const TCP_FLAG_ACK: u8 = 0x10;
pub const TCP_FLAG_RST: u8 = 0x04;

#[repr(C, packed(2))]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: u16,
}
pub const ETH_LEN: usize = size_of::<EthHdr>();

#[repr(C, packed(2))]
pub struct VlanHdr {
    pub tci: u16,
    pub ether_type: u16,
}
pub const VLAN_LEN: usize = size_of::<VlanHdr>();

#[repr(C, packed(2))]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    /// TTL and protocol share one 16-bit checksum word; see [`Ipv4Hdr::ttl_proto_word`].
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: u32,
    pub dst: u32,
}
pub const IPV4_MIN_LEN: usize = size_of::<Ipv4Hdr>();

#[repr(C, packed(2))]
pub struct TcpHdr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub data_offset: u8,
    pub flags: u8,
    pub window: u16,
    pub check: u16,
    pub urgent: u16,
}
pub const TCP_MIN_LEN: usize = size_of::<TcpHdr>();

#[repr(C, packed(2))]
pub struct UdpHdr {
    pub src_port: u16,
    pub dst_port: u16,
    pub len: u16,
    pub check: u16,
}
pub const UDP_LEN: usize = size_of::<UdpHdr>();

/// A bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Why a frame could not be parsed as TCP/UDP over IP; mapped to a
/// counter.
#[derive(Clone, Copy)]
pub enum ParseError {
    TruncatedEth,
    TruncatedVlan,
    /// Neither IPv4 nor IPv6.
    NotIp,
    /// IPv6, for the IPv6 program.
    Ipv6,
    TruncatedIpv4,
    BadIpv4Header,
    Fragment,
    NotTcpUdp,
    TruncatedL4,
    TruncatedIpv6,
    BadIpv6Header,
    Ipv6Extensions,
}

/// Where the transport header is, and the fields the data path needs.
pub struct L4 {
    pub proto: u8,
    /// Network order.
    pub src_port: u16,
    /// Network order.
    pub dst_port: u16,
    /// TCP flags byte; 0 for UDP.
    pub tcp_flags: u8,
    /// Field pointers for rewriting (possibly 2-byte aligned only).
    pub src_port_ptr: *mut u16,
    pub dst_port_ptr: *mut u16,
    pub check_ptr: *mut u16,
}

/// The Ethernet and IP headers of a frame, and where its payload starts.
pub struct L3<F: Family> {
    pub eth: *mut EthHdr,
    /// The frame carries an 802.1Q or 802.1ad tag.
    pub tagged: bool,
    pub ip: *mut F::Hdr,
    /// The transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Offset of the transport header in the frame.
    pub payload: usize,
    /// Offset of the datagram's end (from the IP header's length).
    pub end: usize,
}

impl<F: Family> Clone for L3<F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Family> Copy for L3<F> {}

/// A TCP segment's sequence and acknowledgement numbers (host order).
/// Only for TCP: the parser proved the whole fixed header is in the frame.
#[inline(always)]
pub fn tcp_seq_ack(l4: &L4) -> (u32, u32) {
    let tcp = l4.src_port_ptr as *const TcpHdr;
    // SAFETY: `src_port_ptr` starts the TCP header the parser bounds-checked.
    unsafe { (u32::from_be((*tcp).seq), u32::from_be((*tcp).ack)) }
}

/// A parsed TCP/UDP frame.
pub struct Parsed<F: Family> {
    pub l3: L3<F>,
    pub l4: L4,
}

/// Parses Ethernet and at most one 802.1Q/802.1ad tag: the EtherType
/// after them and where the IP header starts.
#[inline(always)]
pub fn parse_l2(ctx: &XdpContext) -> Result<(*mut EthHdr, u16, usize), ParseError> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok_or(ParseError::TruncatedEth)?;
    // SAFETY: ptr_at checked the bounds; packed fields are read by value.
    let ether_type = unsafe { (*eth).ether_type };
    if ether_type == ETH_P_8021Q_BE || ether_type == ETH_P_8021AD_BE {
        let vlan: *mut VlanHdr = ptr_at(ctx, ETH_LEN).ok_or(ParseError::TruncatedVlan)?;
        // SAFETY: as above.
        return Ok((eth, unsafe { (*vlan).ether_type }, ETH_LEN + VLAN_LEN));
    }
    Ok((eth, ether_type, ETH_LEN))
}

/// Parses Ethernet, at most one 802.1Q/802.1ad tag and an unfragmented
/// IPv4 header (with options). Never touches the frame; nor does
/// [`parse_l4`], which goes on from here for TCP and UDP.
#[inline(always)]
pub fn parse_l3(ctx: &XdpContext) -> Result<L3<V4>, ParseError> {
    let (eth, ether_type, l3) = parse_l2(ctx)?;
    if ether_type != ETH_P_IP_BE {
        return Err(if ether_type == ETH_P_IPV6_BE {
            ParseError::Ipv6
        } else {
            ParseError::NotIp
        });
    }

    let ip: *mut Ipv4Hdr = ptr_at(ctx, l3).ok_or(ParseError::TruncatedIpv4)?;
    let (version_ihl, tot_len, frag_off, proto) = unsafe {
        (
            (*ip).version_ihl,
            (*ip).tot_len,
            (*ip).frag_off,
            (*ip).proto,
        )
    };
    let ihl_bytes = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl_bytes < IPV4_MIN_LEN {
        return Err(ParseError::BadIpv4Header);
    }
    let tot_len = u16::from_be(tot_len) as usize;
    if tot_len < ihl_bytes {
        return Err(ParseError::BadIpv4Header);
    }
    // Options must be in the frame.
    if ctx.data() + l3 + ihl_bytes > ctx.data_end() {
        return Err(ParseError::TruncatedIpv4);
    }
    if frag_off & IPV4_FRAGMENT_MASK_BE != 0 {
        return Err(ParseError::Fragment);
    }

    Ok(L3 {
        eth,
        tagged: l3 != ETH_LEN,
        ip,
        proto,
        payload: l3 + ihl_bytes,
        end: l3 + tot_len,
    })
}

/// Whether the whole datagram is in the frame (trailing Ethernet padding is
/// fine). Checked after the headers a caller needs: the first incomplete
/// header names the reason, after that a short frame is a truncated IP
/// datagram.
#[inline(always)]
pub fn datagram_complete<F: Family>(ctx: &XdpContext, l3: &L3<F>) -> bool {
    ctx.data() + l3.end <= ctx.data_end()
}

/// Parses the fixed part of TCP or UDP after `l3`.
#[inline(always)]
pub fn parse_l4<F: Family>(ctx: &XdpContext, l3: L3<F>) -> Result<Parsed<F>, ParseError> {
    let offset = l3.payload;
    let proto = l3.proto;
    let l4 = match proto {
        failover_common::PROTO_TCP => {
            let tcp: *mut TcpHdr = ptr_at(ctx, offset).ok_or(ParseError::TruncatedL4)?;
            if l3.end < offset + TCP_MIN_LEN {
                return Err(ParseError::TruncatedL4);
            }
            // SAFETY: bounds checked by ptr_at.
            let (src_port, dst_port, tcp_flags) =
                unsafe { ((*tcp).src_port, (*tcp).dst_port, (*tcp).flags) };
            L4 {
                proto,
                src_port,
                dst_port,
                tcp_flags,
                src_port_ptr: unsafe { &raw mut (*tcp).src_port },
                dst_port_ptr: unsafe { &raw mut (*tcp).dst_port },
                check_ptr: unsafe { &raw mut (*tcp).check },
            }
        }
        failover_common::PROTO_UDP => {
            let udp: *mut UdpHdr = ptr_at(ctx, offset).ok_or(ParseError::TruncatedL4)?;
            if l3.end < offset + UDP_LEN {
                return Err(ParseError::TruncatedL4);
            }
            // SAFETY: bounds checked by ptr_at.
            let (src_port, dst_port) = unsafe { ((*udp).src_port, (*udp).dst_port) };
            L4 {
                proto,
                src_port,
                dst_port,
                tcp_flags: 0,
                src_port_ptr: unsafe { &raw mut (*udp).src_port },
                dst_port_ptr: unsafe { &raw mut (*udp).dst_port },
                check_ptr: unsafe { &raw mut (*udp).check },
            }
        }
        _ => return Err(ParseError::NotTcpUdp),
    };
    if !datagram_complete(ctx, &l3) {
        return Err(if F::FAMILY == failover_common::FAMILY_IPV4 {
            ParseError::TruncatedIpv4
        } else {
            ParseError::TruncatedIpv6
        });
    }
    Ok(Parsed { l3, l4 })
}
