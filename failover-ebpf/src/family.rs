//! The two address families as one trait: the client, reply, NAT and
//! next-hop code is written once and compiled per family, one program
//! each (IPv6 reaches its program by a tail call, so IPv4 pays nothing for
//! it). What differs lives here for IPv4 and in `ipv6` for IPv6: the header,
//! its addresses, the hop limit, the header checksum IPv4 has and IPv6 does
//! not, the pseudo-header, the route lookup's address fields, and the
//! answers the program builds itself (path MTU, TCP reset).

use aya_ebpf::{bindings::bpf_fib_lookup as FibParams, programs::XdpContext};
use failover_common::{AddrBe, FAMILY_IPV4, PROTO_UDP, csum};

use crate::{
    nat::End,
    outcome::Outcome,
    parse::{IPV4_FRAGMENT_MASK_BE, IPV4_MIN_LEN, Ipv4Hdr, L3, Parsed, ptr_at},
    pmtu, redispatch, reset,
};

/// One address family of the data path.
pub trait Family: Copy {
    /// The IP header.
    type Hdr;
    /// An address as the header holds it (network order).
    type Addr: Copy + PartialEq;
    /// `failover_common::FAMILY_*`, as keys carry it.
    const FAMILY: u8;
    /// `AF_INET` or `AF_INET6`, for the route lookup.
    const AF: u8;
    /// ICMP's protocol number in this family.
    const PROTO_ICMP: u8;
    /// Whether the ICMP checksum covers a pseudo-header (ICMPv6's does).
    const ICMP_PSEUDO_HEADER: bool;
    /// The `FO_PROGRAMS` slot of the program that redispatches this
    /// family's SYNs.
    const REDISPATCH: u32;

    fn src(ip: *const Self::Hdr) -> Self::Addr;
    fn dst(ip: *const Self::Hdr) -> Self::Addr;
    /// The address as map keys hold it.
    fn key(addr: Self::Addr) -> AddrBe;
    /// The address from a map value's [`AddrBe`] (reads only its words).
    fn from_key(addr: *const AddrBe) -> Self::Addr;
    fn hop_limit(ip: *const Self::Hdr) -> u8;
    /// Type of service / traffic class, for the route lookup.
    fn tos(ip: *const Self::Hdr) -> u8;
    /// The datagram's length with its IP header (host order).
    fn packet_len(ip: *const Self::Hdr) -> u16;
    /// Whether a router may fragment the packet (IPv4 without DF; never
    /// IPv6).
    fn may_fragment(ip: *const Self::Hdr) -> bool;
    /// Writes one end's address, updating the header checksum if the
    /// family has one; returns the old address.
    fn set_addr(ip: *mut Self::Hdr, end: End, addr: Self::Addr) -> Self::Addr;
    /// A TCP or UDP checksum after an address of its pseudo-header changed.
    fn l4_check_after_addr(proto: u8, check: u16, old: Self::Addr, new: Self::Addr) -> u16;
    /// One's-complement sum of the pseudo-header (raw loads).
    fn pseudo_sum(ip: *const Self::Hdr, proto: u8, l4_len: u16) -> u64;
    /// Decrements the TTL or hop limit as a router does (the caller made
    /// sure it is above 1).
    fn decrement_hop_limit(ip: *mut Self::Hdr);
    /// Fills the route lookup's family, addresses and type of service
    /// (traffic class).
    fn fib_addresses(params: &mut FibParams, src: Self::Addr, dst: Self::Addr, tos: u8);
    /// The header checksum (0 where the family has none).
    fn header_check(ip: *const Self::Hdr) -> u16;
    /// Whether an ICMP message of `kind` and `code` says the destination
    /// is unreachable (evidence of a failure; not "fragmentation needed",
    /// which is path MTU discovery).
    fn is_failure(kind: u8, code: u8) -> bool;
    /// Whether an ICMP message of `kind` is an error about a packet that
    /// the data path translates (destination unreachable, time exceeded;
    /// IPv6's Packet Too Big, which IPv4 carries as an unreachable code).
    fn is_icmp_error(kind: u8) -> bool;
    /// The unfragmented IP header an ICMP error embeds at `offset`, its
    /// length and the protocol after it.
    fn embedded(ctx: &XdpContext, offset: usize) -> Option<(*mut Self::Hdr, usize, u8)>;
    /// Turns the frame into the family's "too big" answer carrying `mtu`
    /// (ICMP fragmentation needed, ICMPv6 Packet Too Big), back to its
    /// sender.
    fn too_big(ctx: &XdpContext, l3: &L3<Self>, mtu: u16) -> Outcome;
    /// Turns a TCP frame into a RST from its destination to its source;
    /// whether it did.
    fn reset(ctx: &XdpContext, parsed: &Parsed<Self>) -> bool;
    /// Turns a backend's RST into the client's SYN (sequence number `seq`)
    /// to `vip`:`vip_port_be` (`redispatch`).
    fn rebuild_syn(
        ctx: &XdpContext,
        parsed: &Parsed<Self>,
        vip: Self::Addr,
        vip_port_be: u16,
        seq: u32,
    ) -> redispatch::Rebuilt;
}

/// IPv4.
#[derive(Clone, Copy)]
pub struct V4;

const IPV4_DF_BE: u16 = 0x4000u16.to_be();
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_FRAG_NEEDED: u8 = 4;

impl Family for V4 {
    type Hdr = Ipv4Hdr;
    type Addr = u32;
    const FAMILY: u8 = FAMILY_IPV4;
    const AF: u8 = 2;
    const PROTO_ICMP: u8 = 1;
    const ICMP_PSEUDO_HEADER: bool = false;
    const REDISPATCH: u32 = failover_common::programs::REDISPATCH;

    #[inline(always)]
    fn src(ip: *const Ipv4Hdr) -> u32 {
        // SAFETY: the parser proved the header is in the frame.
        unsafe { (*ip).src }
    }

    #[inline(always)]
    fn dst(ip: *const Ipv4Hdr) -> u32 {
        // SAFETY: as above.
        unsafe { (*ip).dst }
    }

    #[inline(always)]
    fn key(addr: u32) -> AddrBe {
        [addr, 0, 0, 0]
    }

    #[inline(always)]
    fn from_key(addr: *const AddrBe) -> u32 {
        // SAFETY: the caller passes a live map value's field.
        unsafe { (*addr)[0] }
    }

    #[inline(always)]
    fn hop_limit(ip: *const Ipv4Hdr) -> u8 {
        // SAFETY: as above.
        unsafe { (*ip).ttl }
    }

    #[inline(always)]
    fn tos(ip: *const Ipv4Hdr) -> u8 {
        // SAFETY: as above.
        unsafe { (*ip).tos }
    }

    #[inline(always)]
    fn packet_len(ip: *const Ipv4Hdr) -> u16 {
        // SAFETY: as above.
        u16::from_be(unsafe { (*ip).tot_len })
    }

    #[inline(always)]
    fn may_fragment(ip: *const Ipv4Hdr) -> bool {
        // SAFETY: as above.
        unsafe { (*ip).frag_off & IPV4_DF_BE == 0 }
    }

    #[inline(always)]
    fn set_addr(ip: *mut Ipv4Hdr, end: End, addr: u32) -> u32 {
        // SAFETY: as above.
        unsafe {
            let old = match end {
                End::Destination => (*ip).dst,
                End::Source => (*ip).src,
            };
            match end {
                End::Destination => (*ip).dst = addr,
                End::Source => (*ip).src = addr,
            }
            (*ip).check = csum::update32((*ip).check, old, addr);
            old
        }
    }

    #[inline(always)]
    fn l4_check_after_addr(proto: u8, check: u16, old: u32, new: u32) -> u16 {
        if proto == PROTO_UDP {
            csum::udp_update32(check, old, new)
        } else {
            csum::update32(check, old, new)
        }
    }

    #[inline(always)]
    fn pseudo_sum(ip: *const Ipv4Hdr, proto: u8, l4_len: u16) -> u64 {
        let (src, dst) = (Self::src(ip), Self::dst(ip));
        u64::from(src & 0xffff)
            + u64::from(src >> 16)
            + u64::from(dst & 0xffff)
            + u64::from(dst >> 16)
            + u64::from(u16::from_ne_bytes([0, proto]))
            + u64::from(u16::from_ne_bytes(l4_len.to_be_bytes()))
    }

    #[inline(always)]
    fn decrement_hop_limit(ip: *mut Ipv4Hdr) {
        // SAFETY: as above; TTL and protocol form the 16-bit word the
        // header checksum sees.
        unsafe {
            let ttl = (*ip).ttl;
            let proto = (*ip).proto;
            let old_word = u16::from_ne_bytes([ttl, proto]);
            let new_word = u16::from_ne_bytes([ttl - 1, proto]);
            (*ip).ttl = ttl - 1;
            (*ip).check = csum::update16((*ip).check, old_word, new_word);
        }
    }

    #[inline(always)]
    fn fib_addresses(params: &mut FibParams, src: u32, dst: u32, tos: u8) {
        params.family = Self::AF;
        params.__bindgen_anon_2.tos = tos;
        params.__bindgen_anon_3.ipv4_src = src;
        params.__bindgen_anon_4.ipv4_dst = dst;
    }

    #[inline(always)]
    fn header_check(ip: *const Ipv4Hdr) -> u16 {
        // SAFETY: as above.
        unsafe { (*ip).check }
    }

    #[inline(always)]
    fn is_icmp_error(kind: u8) -> bool {
        kind == ICMP_DEST_UNREACHABLE || kind == ICMP_TIME_EXCEEDED
    }

    #[inline(always)]
    fn is_failure(kind: u8, code: u8) -> bool {
        kind == ICMP_DEST_UNREACHABLE && code != ICMP_FRAG_NEEDED
    }

    #[inline(always)]
    fn embedded(ctx: &XdpContext, offset: usize) -> Option<(*mut Ipv4Hdr, usize, u8)> {
        let inner: *mut Ipv4Hdr = ptr_at(ctx, offset)?;
        // SAFETY: bounds checked by ptr_at.
        let (version_ihl, frag_off, proto) =
            unsafe { ((*inner).version_ihl, (*inner).frag_off, (*inner).proto) };
        let ihl = usize::from(version_ihl & 0x0f) * 4;
        (version_ihl >> 4 == 4 && ihl >= IPV4_MIN_LEN && frag_off & IPV4_FRAGMENT_MASK_BE == 0)
            .then_some((inner, ihl, proto))
    }

    #[inline(always)]
    fn too_big(ctx: &XdpContext, l3: &L3<Self>, mtu: u16) -> Outcome {
        pmtu::answer(ctx, l3, mtu)
    }

    #[inline(always)]
    fn reset(ctx: &XdpContext, parsed: &Parsed<Self>) -> bool {
        reset::answer(ctx, parsed)
    }

    #[inline(always)]
    fn rebuild_syn(
        ctx: &XdpContext,
        parsed: &Parsed<Self>,
        vip: u32,
        vip_port_be: u16,
        seq: u32,
    ) -> redispatch::Rebuilt {
        redispatch::syn_v4(ctx, parsed, vip, vip_port_be, seq)
    }
}
