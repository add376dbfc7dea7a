//! Path MTU discovery through the balancer. A packet longer than its next
//! hop's MTU (the route lookup says so, and gives the MTU) that may not be
//! fragmented — IPv4 with "don't fragment", which every TCP stack sets, and
//! every IPv6 packet — is answered like a router answers it: ICMP
//! "fragmentation needed" or ICMPv6 "Packet Too Big" with the MTU, back to
//! the sender, so it resends smaller instead of retrying the
//! same size until the connection times out. The answer comes from the
//! address the packet was sent to (the VIP, for a client), quotes the
//! packet's IP header and first 8 bytes as the sender sent them, and is
//! rate-limited per CPU (`ratelimit`). A packet that may be fragmented is
//! rewritten and handed to the stack, which fragments it
//! (`egress::via_stack`).
//!
//! Contract: `l3` comes from the parser, which proved the IP header (with
//! IPv6's extension headers) and at least 8 bytes of transport header are
//! in the frame. The frame is turned into the answer in place: room is
//! made in front of the IP header for the new IP and ICMP headers (28
//! bytes for IPv4, 48 for IPv6), the L2 header moves there, and the tail
//! is cut after the quoted bytes.

use core::ptr::{read_unaligned, write_unaligned};

use aya_ebpf::{
    bindings::xdp_action::XDP_TX,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use failover_common::{csum, stats::reason};

use crate::{
    family::{Family, V4},
    ipv6::{ICMPV6_PACKET_TOO_BIG, IPV6_LEN, Ipv6Hdr, PROTO_ICMPV6, V6},
    outcome::{Outcome, drop},
    parse::{ETH_LEN, EthHdr, IPV4_MIN_LEN, Ipv4Hdr, L3, VLAN_LEN, VlanHdr, ptr_at},
    ratelimit,
};

const ICMP_HEADER_LEN: usize = 8;
/// What the answer adds in front of the quoted packet.
const ADDED: usize = IPV4_MIN_LEN + ICMP_HEADER_LEN;
/// Transport bytes quoted after the IP header.
const QUOTED_L4: usize = 8;
/// Longest quote: an IP header with 40 bytes of options, and 8 bytes.
const MAX_QUOTED: usize = 60 + QUOTED_L4;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const PROTO_ICMP: u8 = 1;
/// Precedence "internetwork control", as routers send ICMP errors.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;
/// What an IPv6 answer adds in front of the quoted packet.
const ADDED_V6: usize = IPV6_LEN + ICMP_HEADER_LEN;
/// Longest IPv6 quote: the header, the most extension headers the parser
/// walks (256 bytes), and 8: the quote always reaches the ports.
const MAX_QUOTED_V6: usize = IPV6_LEN + 256 + QUOTED_L4;
const IPV6_VERSION_BE: u32 = (6u32 << 28).to_be();

/// Answers the packet with ICMP "fragmentation needed" carrying `mtu`.
#[inline(always)]
pub fn answer(ctx: &XdpContext, l3: &L3<V4>, mtu: u16) -> Outcome {
    if !ratelimit::answer_allowed() {
        return drop(reason::DROP_FRAG_NEEDED);
    }
    let tagged = l3.tagged;
    // SAFETY: the parser proved the header is in the frame.
    let (ihl, sender, receiver) = unsafe {
        (
            usize::from((*l3.ip).version_ihl & 0x0f) * 4,
            (*l3.ip).src,
            (*l3.ip).dst,
        )
    };
    if !(IPV4_MIN_LEN..=60).contains(&ihl) {
        return drop(reason::DROP_FRAG_NEEDED);
    }
    // Constant offsets, for the verifier.
    let l3_offset = if tagged { ETH_LEN + VLAN_LEN } else { ETH_LEN };
    let quoted = ihl + QUOTED_L4;
    if !make_room::<ADDED>(ctx, tagged, l3_offset + ADDED + quoted) {
        return drop(reason::DROP_FRAG_NEEDED);
    }
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, l3_offset) else {
        return drop(reason::DROP_FRAG_NEEDED);
    };
    // SAFETY: `ip` is bounds-checked; the ICMP header and the quote are
    // checked word by word below.
    unsafe {
        (*ip).version_ihl = 0x45;
        (*ip).tos = TOS_INTERNETWORK_CONTROL;
        (*ip).tot_len = ((ADDED + quoted) as u16).to_be();
        (*ip).id = 0;
        (*ip).frag_off = 0;
        (*ip).ttl = 64;
        (*ip).proto = PROTO_ICMP;
        (*ip).check = 0;
        (*ip).src = receiver;
        (*ip).dst = sender;
        (*ip).check = !csum::fold(sum_words::<MAX_QUOTED>(ctx, l3_offset, IPV4_MIN_LEN / 2));
    }
    let icmp_offset = l3_offset + IPV4_MIN_LEN;
    let Some(icmp) = ptr_at::<[u8; ICMP_HEADER_LEN]>(ctx, icmp_offset) else {
        return drop(reason::DROP_FRAG_NEEDED);
    };
    let mtu = mtu.to_be_bytes();
    // SAFETY: bounds-checked above.
    unsafe {
        write_unaligned(
            icmp,
            [
                ICMP_DEST_UNREACHABLE,
                ICMP_FRAG_NEEDED,
                0,
                0,
                0,
                0,
                mtu[0],
                mtu[1],
            ],
        );
    }
    let words = (ICMP_HEADER_LEN + quoted) / 2;
    let sum = sum_words::<MAX_QUOTED>(ctx, icmp_offset, words);
    finish(ctx, icmp_offset, sum)
}

/// Writes the ICMP checksum of the answer whose message sums to `sum`.
#[inline(always)]
fn finish(ctx: &XdpContext, icmp_offset: usize, sum: u64) -> Outcome {
    let Some(check) = ptr_at::<u16>(ctx, icmp_offset + 2) else {
        return drop(reason::DROP_FRAG_NEEDED);
    };
    // SAFETY: bounds-checked above.
    unsafe { write_unaligned(check, !csum::fold(sum)) };
    Outcome {
        action: XDP_TX,
        reason: reason::TX_FRAG_NEEDED,
    }
}

/// Answers the packet with ICMPv6 "Packet Too Big" carrying `mtu`
/// (RFC 4443), quoting its IPv6 header, extension headers and 8 bytes of
/// transport header.
#[inline(always)]
pub fn answer_v6(ctx: &XdpContext, l3: &L3<V6>, mtu: u16) -> Outcome {
    if !ratelimit::answer_allowed() {
        return drop(reason::DROP_FRAG_NEEDED);
    }
    let tagged = l3.tagged;
    let (sender, receiver) = (V6::src(l3.ip), V6::dst(l3.ip));
    let l3_offset = if tagged { ETH_LEN + VLAN_LEN } else { ETH_LEN };
    let quoted = (l3.payload - l3_offset + QUOTED_L4).min(MAX_QUOTED_V6);
    if !make_room::<ADDED_V6>(ctx, tagged, l3_offset + ADDED_V6 + quoted) {
        return drop(reason::DROP_FRAG_NEEDED);
    }
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, l3_offset) else {
        return drop(reason::DROP_FRAG_NEEDED);
    };
    let message_len = (ICMP_HEADER_LEN + quoted) as u16;
    // SAFETY: `ip` is bounds-checked.
    unsafe {
        (*ip).vtc_flow = IPV6_VERSION_BE;
        (*ip).payload_len = message_len.to_be();
        (*ip).next_header = PROTO_ICMPV6;
        (*ip).hop_limit = 64;
        (*ip).src = receiver;
        (*ip).dst = sender;
    }
    let icmp_offset = l3_offset + IPV6_LEN;
    let Some(icmp) = ptr_at::<[u8; ICMP_HEADER_LEN]>(ctx, icmp_offset) else {
        return drop(reason::DROP_FRAG_NEEDED);
    };
    let mtu = mtu.to_be_bytes();
    // SAFETY: bounds-checked above.
    unsafe {
        write_unaligned(icmp, [ICMPV6_PACKET_TOO_BIG, 0, 0, 0, 0, 0, mtu[0], mtu[1]]);
    }
    let words = (ICMP_HEADER_LEN + quoted) / 2;
    let sum = sum_words::<MAX_QUOTED_V6>(ctx, icmp_offset, words)
        + V6::pseudo_sum(ip, PROTO_ICMPV6, message_len);
    finish(ctx, icmp_offset, sum)
}

/// Makes `ADDED` bytes of room in front of the IP header for the answer's
/// headers, cuts the frame to `wanted` bytes and moves the L2 header to the
/// front; false if the frame cannot be adjusted. Every pointer must be made
/// afresh by `ptr_at` after it.
#[inline(always)]
fn make_room<const ADDED: usize>(ctx: &XdpContext, tagged: bool, wanted: usize) -> bool {
    // SAFETY: helper calls on this program's frame.
    unsafe {
        if bpf_xdp_adjust_head(ctx.ctx, -(ADDED as i32)) != 0 {
            return false;
        }
        let len = ctx.data_end() - ctx.data();
        if len > wanted {
            // Failing to cut leaves padding after what the IP header
            // covers, which receivers ignore.
            let _ = bpf_xdp_adjust_tail(ctx.ctx, wanted as i32 - len as i32);
        }
    }
    move_l2_header::<ADDED>(ctx, tagged)
}

/// Moves the L2 header (and its VLAN tag) from behind the added room to
/// the front, addressed back to the sender.
#[inline(always)]
fn move_l2_header<const ADDED: usize>(ctx: &XdpContext, tagged: bool) -> bool {
    let (Some(old), Some(new)) = (ptr_at::<EthHdr>(ctx, ADDED), ptr_at::<EthHdr>(ctx, 0)) else {
        return false;
    };
    // SAFETY: both bounds-checked; they do not overlap (ADDED > ETH_LEN).
    unsafe {
        let (dst, src, ether_type) = ((*old).dst, (*old).src, (*old).ether_type);
        (*new).dst = src;
        (*new).src = dst;
        (*new).ether_type = ether_type;
    }
    if tagged {
        let (Some(old), Some(new)) = (
            ptr_at::<VlanHdr>(ctx, ADDED + ETH_LEN),
            ptr_at::<VlanHdr>(ctx, ETH_LEN),
        ) else {
            return false;
        };
        // SAFETY: both bounds-checked; they do not overlap.
        unsafe { write_unaligned(new, read_unaligned(old)) };
    }
    true
}

/// One's-complement sum of `words` 16-bit words from `offset` (raw loads),
/// each bounds-checked; at most those of an answer quoting `QUOTED` bytes.
#[inline(always)]
fn sum_words<const QUOTED: usize>(ctx: &XdpContext, offset: usize, words: usize) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < (ICMP_HEADER_LEN + QUOTED) / 2 && i < words {
        let Some(word) = ptr_at::<u16>(ctx, offset + 2 * i) else {
            break;
        };
        // SAFETY: bounds-checked.
        sum += u64::from(unsafe { read_unaligned(word) });
        i += 1;
    }
    sum
}
