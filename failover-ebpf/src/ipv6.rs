//! IPv6: the header, its extension chain, and the family's side of the
//! shared data path (`family::Family`). No header checksum; the
//! pseudo-header carries both 128-bit addresses; the hop limit is
//! decremented as a router does.
//!
//! The parser walks at most [`MAX_EXTENSIONS`] extension headers
//! (hop-by-hop, routing with no segments left, destination options); a
//! fragment header passes the frame to the stack (reassembly is its job),
//! as does a chain the parser cannot finish, each counted by reason. A
//! routing header with segments left names a destination the checksum
//! covers and a next hop after the VIP: never ours to rewrite. An
//! authentication header's check value covers the addresses: rewriting
//! them would break it, so such a packet passes too. Neighbour
//! discovery and router messages are ICMPv6, never TCP or UDP: they pass
//! untouched.

use core::{
    mem::size_of,
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams, helpers::bpf_xdp_load_bytes, macros::map,
    maps::PerCpuArray, programs::XdpContext,
};
use failover_common::{AddrBe, FAMILY_IPV6, PROTO_UDP, csum};

use crate::{
    family::Family,
    nat::End,
    outcome::Outcome,
    parse::{ETH_P_IPV6_BE, L3, ParseError, Parsed, parse_l2, ptr_at},
    pmtu, redispatch, reset,
};

pub const PROTO_ICMPV6: u8 = 58;
const ICMPV6_DEST_UNREACHABLE: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_AUTH: u8 = 51;
const NEXT_DEST_OPTIONS: u8 = 60;
/// Extension headers walked at most (more pass, counted).
pub const MAX_EXTENSIONS: usize = 4;
/// ICMPv6 router solicitation .. redirect (RFC 4861).
pub const ND_FIRST: u8 = 133;
pub const ND_LAST: u8 = 137;

#[repr(C, packed(2))]
pub struct Ipv6Hdr {
    /// Version (4 bits), traffic class (8), flow label (20); network order.
    pub vtc_flow: u32,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
}
pub const IPV6_LEN: usize = size_of::<Ipv6Hdr>();

/// The first four bytes of every walked extension header.
#[repr(C)]
struct ExtHdr {
    next_header: u8,
    /// In 8-byte units after the first 8.
    len: u8,
    /// A routing header's type; an option otherwise.
    routing_type: u8,
    /// A routing header's segments left; an option otherwise.
    segments_left: u8,
}

/// Parses Ethernet, at most one VLAN tag, the IPv6 header and its
/// extension headers up to the transport header. Never touches the frame.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<L3<V6>, ParseError> {
    let (eth, ether_type, l3) = parse_l2(ctx)?;
    if ether_type != ETH_P_IPV6_BE {
        return Err(ParseError::NotIp);
    }
    let ip: *mut Ipv6Hdr = ptr_at(ctx, l3).ok_or(ParseError::TruncatedIpv6)?;
    // SAFETY: ptr_at checked the bounds; packed fields are read by value.
    let (vtc_flow, payload_len, mut next) =
        unsafe { ((*ip).vtc_flow, (*ip).payload_len, (*ip).next_header) };
    let payload_len = usize::from(u16::from_be(payload_len));
    // A payload length of 0 is a jumbogram's (RFC 2675): not ours.
    if u32::from_be(vtc_flow) >> 28 != 6 || payload_len == 0 {
        return Err(ParseError::BadIpv6Header);
    }
    let end = l3 + IPV6_LEN + payload_len;
    let mut offset = l3 + IPV6_LEN;
    if is_extension(next) {
        (offset, next) = walk_extensions(ctx, offset, next)?;
    }
    if offset > end {
        return Err(ParseError::BadIpv6Header);
    }
    Ok(L3 {
        eth,
        tagged: l3 != crate::parse::ETH_LEN,
        ip,
        proto: next,
        payload: offset,
        end,
    })
}

fn is_extension(next: u8) -> bool {
    matches!(
        next,
        NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTIONS | NEXT_AUTH | NEXT_FRAGMENT
    )
}

/// Walks the extension headers from `offset` (the first's type is
/// `next`): where the transport header starts, and its protocol.
#[inline(always)]
fn walk_extensions(
    ctx: &XdpContext,
    mut offset: usize,
    mut next: u8,
) -> Result<(usize, u8), ParseError> {
    let mut walked = 0;
    while walked < MAX_EXTENSIONS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTIONS => {}
            NEXT_FRAGMENT => return Err(ParseError::Fragment),
            NEXT_AUTH => return Err(ParseError::Ipv6Extensions),
            _ => break,
        }
        let ext: *const ExtHdr = ptr_at(ctx, offset).ok_or(ParseError::TruncatedIpv6)?;
        // SAFETY: bounds checked above.
        let (following, len, segments_left) = unsafe {
            (
                (*ext).next_header,
                usize::from((*ext).len),
                (*ext).segments_left,
            )
        };
        if next == NEXT_ROUTING && segments_left != 0 {
            return Err(ParseError::Ipv6Extensions);
        }
        offset += (len + 1) * 8;
        next = following;
        walked += 1;
    }
    if next == NEXT_FRAGMENT {
        return Err(ParseError::Fragment);
    }
    if is_extension(next) || offset > MAX_TRANSPORT_OFFSET {
        return Err(ParseError::Ipv6Extensions);
    }
    forget_path(offset, next).ok_or(ParseError::Ipv6Extensions)
}

/// Where the transport header may start at most (the extension headers
/// walked take at most 256 bytes).
const MAX_TRANSPORT_OFFSET: usize = 18 + IPV6_LEN + 256;

/// The walk's result, and its precision dropped: every chain of extension
/// headers the walk took would otherwise reach the rest of the program
/// with its own known offset, and the verifier would check the rest once
/// per chain (millions of instructions). A round trip through this CPU's
/// slot leaves it one bounded range.
#[inline(always)]
fn forget_path(offset: usize, next: u8) -> Option<(usize, u8)> {
    let slot = WALKED.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; volatile so the compiler keeps the round
    // trip.
    let [offset, next] = unsafe {
        write_volatile(slot, [offset as u32, u32::from(next)]);
        read_volatile(slot)
    };
    let offset = offset as usize;
    (offset <= MAX_TRANSPORT_OFFSET).then_some((offset, next as u8))
}

/// Scratch for [`forget_path`]. Not pinned.
#[map(name = "FO_IPV6_WALK")]
static WALKED: PerCpuArray<[u32; 2]> = PerCpuArray::with_max_entries(1, 0);

/// The ICMPv6 type of a message at `l3`'s payload, if it is in the frame
/// (copied by the helper: this is the rare path, and the offset is one the
/// verifier cannot follow through a compare of another register).
#[inline(always)]
pub fn icmp_type(ctx: &XdpContext, l3: &L3<V6>) -> Option<u8> {
    if l3.proto != PROTO_ICMPV6 {
        return None;
    }
    let mut kind = 0u8;
    // SAFETY: copies one byte into a local; the helper checks the bounds.
    let loaded =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, l3.payload as u32, (&raw mut kind).cast(), 1) };
    (loaded == 0).then_some(kind)
}

/// IPv6.
#[derive(Clone, Copy)]
pub struct V6;

impl Family for V6 {
    type Hdr = Ipv6Hdr;
    type Addr = [u32; 4];
    const FAMILY: u8 = FAMILY_IPV6;
    const AF: u8 = 10;
    const PROTO_ICMP: u8 = PROTO_ICMPV6;
    const ICMP_PSEUDO_HEADER: bool = true;
    const REDISPATCH: u32 = failover_common::programs::IPV6_REDISPATCH;

    #[inline(always)]
    fn src(ip: *const Ipv6Hdr) -> [u32; 4] {
        // SAFETY: the parser proved the header is in the frame.
        unsafe { (*ip).src }
    }

    #[inline(always)]
    fn dst(ip: *const Ipv6Hdr) -> [u32; 4] {
        // SAFETY: as above.
        unsafe { (*ip).dst }
    }

    #[inline(always)]
    fn key(addr: [u32; 4]) -> AddrBe {
        addr
    }

    #[inline(always)]
    fn from_key(addr: *const AddrBe) -> [u32; 4] {
        // SAFETY: the caller passes a live map value's field.
        unsafe { *addr }
    }

    #[inline(always)]
    fn hop_limit(ip: *const Ipv6Hdr) -> u8 {
        // SAFETY: as above.
        unsafe { (*ip).hop_limit }
    }

    #[inline(always)]
    fn tos(ip: *const Ipv6Hdr) -> u8 {
        // SAFETY: as above.
        (u32::from_be(unsafe { (*ip).vtc_flow }) >> 20) as u8
    }

    #[inline(always)]
    fn packet_len(ip: *const Ipv6Hdr) -> u16 {
        // SAFETY: as above.
        u16::from_be(unsafe { (*ip).payload_len }).saturating_add(IPV6_LEN as u16)
    }

    #[inline(always)]
    fn may_fragment(_ip: *const Ipv6Hdr) -> bool {
        false
    }

    #[inline(always)]
    fn set_addr(ip: *mut Ipv6Hdr, end: End, addr: [u32; 4]) -> [u32; 4] {
        // SAFETY: as above.
        unsafe {
            match end {
                End::Destination => {
                    let old = (*ip).dst;
                    (*ip).dst = addr;
                    old
                }
                End::Source => {
                    let old = (*ip).src;
                    (*ip).src = addr;
                    old
                }
            }
        }
    }

    #[inline(always)]
    fn l4_check_after_addr(proto: u8, check: u16, old: [u32; 4], new: [u32; 4]) -> u16 {
        // A zero UDP checksum is invalid over IPv6; it stays as wrong.
        if proto == PROTO_UDP {
            csum::udp_update128(check, old, new)
        } else {
            csum::update128(check, old, new)
        }
    }

    #[inline(always)]
    fn pseudo_sum(ip: *const Ipv6Hdr, proto: u8, l4_len: u16) -> u64 {
        let (src, dst) = (Self::src(ip), Self::dst(ip));
        let mut sum = u64::from(u16::from_ne_bytes([0, proto]))
            + u64::from(u16::from_ne_bytes(l4_len.to_be_bytes()));
        let mut i = 0;
        while i < 4 {
            sum += u64::from(src[i] & 0xffff)
                + u64::from(src[i] >> 16)
                + u64::from(dst[i] & 0xffff)
                + u64::from(dst[i] >> 16);
            i += 1;
        }
        sum
    }

    #[inline(always)]
    fn decrement_hop_limit(ip: *mut Ipv6Hdr) {
        // SAFETY: as above.
        unsafe { (*ip).hop_limit -= 1 }
    }

    #[inline(always)]
    fn fib_addresses(params: &mut FibParams, src: [u32; 4], dst: [u32; 4], tos: u8) {
        params.family = Self::AF;
        // The traffic class, for policy routing by it (no flow label).
        params.__bindgen_anon_2.flowinfo = (u32::from(tos) << 20).to_be();
        params.__bindgen_anon_3.ipv6_src = src;
        params.__bindgen_anon_4.ipv6_dst = dst;
    }

    #[inline(always)]
    fn header_check(_ip: *const Ipv6Hdr) -> u16 {
        0
    }

    /// Packet Too Big is a type of its own.
    #[inline(always)]
    fn is_failure(kind: u8, _code: u8) -> bool {
        kind == ICMPV6_DEST_UNREACHABLE
    }

    #[inline(always)]
    fn is_icmp_error(kind: u8) -> bool {
        matches!(
            kind,
            ICMPV6_DEST_UNREACHABLE | ICMPV6_PACKET_TOO_BIG | ICMPV6_TIME_EXCEEDED
        )
    }

    /// Extension headers in the embedded packet are not walked: such an
    /// error passes untranslated.
    #[inline(always)]
    fn embedded(ctx: &XdpContext, offset: usize) -> Option<(*mut Ipv6Hdr, usize, u8)> {
        let inner: *mut Ipv6Hdr = ptr_at(ctx, offset)?;
        // SAFETY: bounds checked by ptr_at.
        let (vtc_flow, next) = unsafe { ((*inner).vtc_flow, (*inner).next_header) };
        (u32::from_be(vtc_flow) >> 28 == 6).then_some((inner, IPV6_LEN, next))
    }

    #[inline(always)]
    fn too_big(ctx: &XdpContext, l3: &L3<Self>, mtu: u16) -> Outcome {
        pmtu::answer_v6(ctx, l3, mtu)
    }

    #[inline(always)]
    fn reset(ctx: &XdpContext, parsed: &Parsed<Self>) -> bool {
        reset::answer_v6(ctx, parsed)
    }

    #[inline(always)]
    fn rebuild_syn(
        ctx: &XdpContext,
        parsed: &Parsed<Self>,
        vip: [u32; 4],
        vip_port_be: u16,
        seq: u32,
    ) -> redispatch::Rebuilt {
        redispatch::syn_v6(ctx, parsed, vip, vip_port_be, seq)
    }
}
