//! TCP RST answers from the VIP, for packets of tracked flows whose backend
//! is gone when the service's dead-flow policy is `reset`: the client learns
//! at once that the connection is dead and reconnects, instead of waiting
//! for retransmission timeouts.
//!
//! Contract: `parsed` is a TCP frame from the parser. The frame is rewritten in
//! place into a 20-byte IPv4 (or 40-byte IPv6) + 20-byte TCP reply (RFC 793
//! reset generation: with ACK, seq = their ack; without, ack = their seq +
//! segment length) and then shortened. Frames with IPv4 options or IPv6
//! extension headers are left alone (`false`).

use core::ptr::{read_unaligned, write_unaligned};

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use failover_common::{PROTO_TCP, csum};

use crate::{
    family::{Family, V4},
    ipv6::{IPV6_LEN, V6},
    parse::{
        ETH_LEN, EthHdr, Parsed, TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN, TcpHdr,
        VLAN_LEN, ptr_at,
    },
};

const IPV4_DF_BE: u16 = 0x4000u16.to_be();
const TCP_LEN: u16 = 20;

/// One's-complement sum of `words` 16-bit words at `ptr` (raw loads).
#[inline(always)]
pub(crate) fn sum_words(ptr: *const u16, words: usize) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < words {
        // SAFETY: the caller guarantees `words` words are in bounds.
        sum += u64::from(unsafe { read_unaligned(ptr.add(i)) });
        i += 1;
    }
    sum
}

/// Turns an IPv4 frame into a RST to the client. Returns whether it did.
#[inline(always)]
pub fn answer(ctx: &XdpContext, parsed: &Parsed<V4>) -> bool {
    let ip = parsed.l3.ip;
    let tcp = parsed.l4.src_port_ptr as *mut TcpHdr;
    // SAFETY: the parser proved the Ethernet, 20-byte IPv4 and 20-byte TCP
    // headers are in the frame; all accesses below stay inside them.
    unsafe {
        if (*ip).version_ihl != 0x45 || (*ip).proto != PROTO_TCP {
            return false;
        }
        let segment = u16::from_be((*ip).tot_len).saturating_sub(20);
        let numbers = numbers(tcp, segment);
        swap_macs(parsed.l3.eth);
        let (src, dst) = ((*ip).src, (*ip).dst);
        (*ip).src = dst;
        (*ip).dst = src;
        (*ip).tot_len = (20 + TCP_LEN).to_be();
        (*ip).id = 0;
        (*ip).frag_off = IPV4_DF_BE;
        (*ip).ttl = 64;
        (*ip).check = 0;
        (*ip).check = !csum::fold(sum_words(ip as *const u16, 10));
        write_tcp(tcp, numbers, V4::pseudo_sum(ip, PROTO_TCP, TCP_LEN));
        shorten(ctx, ip as usize, 20);
    }
    true
}

/// Turns an IPv6 frame without extension headers into a RST to the
/// client. Returns whether it did.
#[inline(always)]
pub fn answer_v6(ctx: &XdpContext, parsed: &Parsed<V6>) -> bool {
    let ip = parsed.l3.ip;
    // Constant offsets, for the verifier: the TCP header right after the
    // IPv6 header, bounds-checked here.
    let l3_offset = if parsed.l3.tagged {
        ETH_LEN + VLAN_LEN
    } else {
        ETH_LEN
    };
    if parsed.l3.proto != PROTO_TCP || parsed.l3.payload != l3_offset + IPV6_LEN {
        return false;
    }
    let Some(tcp) = ptr_at::<TcpHdr>(ctx, l3_offset + IPV6_LEN) else {
        return false;
    };
    // SAFETY: the parser proved the Ethernet, IPv6 and 20-byte TCP headers
    // are in the frame; all accesses below stay inside them.
    unsafe {
        let segment = u16::from_be((*ip).payload_len);
        let numbers = numbers(tcp, segment);
        swap_macs(parsed.l3.eth);
        let (src, dst) = ((*ip).src, (*ip).dst);
        (*ip).src = dst;
        (*ip).dst = src;
        (*ip).vtc_flow = (6u32 << 28).to_be();
        (*ip).payload_len = TCP_LEN.to_be();
        (*ip).next_header = PROTO_TCP;
        (*ip).hop_limit = 64;
        write_tcp(tcp, numbers, V6::pseudo_sum(ip, PROTO_TCP, TCP_LEN));
        shorten(ctx, ip as usize, IPV6_LEN as u16);
    }
    true
}

/// The RST's sequence number, acknowledgement number and flags for a
/// segment of `segment` bytes (TCP header included).
///
/// # Safety
/// `tcp` points at a TCP header in the frame.
#[inline(always)]
unsafe fn numbers(tcp: *const TcpHdr, segment: u16) -> (u32, u32, u8) {
    // SAFETY: per the contract.
    unsafe {
        let data_offset = u16::from(((*tcp).data_offset >> 4) * 4).max(20);
        let flags = (*tcp).flags;
        let payload = u32::from(segment.saturating_sub(data_offset));
        let their_seq = u32::from_be((*tcp).seq);
        let their_ack = u32::from_be((*tcp).ack);
        if flags & TCP_FLAG_ACK != 0 {
            (their_ack, 0, TCP_FLAG_RST)
        } else {
            let syn_fin =
                u32::from(flags & TCP_FLAG_SYN != 0) + u32::from(flags & TCP_FLAG_FIN != 0);
            (
                0,
                their_seq.wrapping_add(payload).wrapping_add(syn_fin),
                TCP_FLAG_RST | TCP_FLAG_ACK,
            )
        }
    }
}

#[inline(always)]
fn swap_macs(eth: *mut EthHdr) {
    // SAFETY: `eth` was bounds-checked by the parser.
    unsafe {
        let (dst_mac, src_mac) = ((*eth).dst, (*eth).src);
        (*eth).dst = src_mac;
        (*eth).src = dst_mac;
    }
}

/// Writes the 20-byte RST back to where it came from, with its checksum
/// (`pseudo`: the pseudo-header's sum, addresses already swapped).
///
/// # Safety
/// `tcp` points at a 20-byte TCP header in the frame.
#[inline(always)]
unsafe fn write_tcp(tcp: *mut TcpHdr, (seq, ack, flags): (u32, u32, u8), pseudo: u64) {
    // SAFETY: per the contract.
    unsafe {
        let (sport, dport) = ((*tcp).src_port, (*tcp).dst_port);
        (*tcp).src_port = dport;
        (*tcp).dst_port = sport;
        (*tcp).seq = seq.to_be();
        (*tcp).ack = ack.to_be();
        (*tcp).data_offset = 5 << 4;
        (*tcp).flags = flags;
        (*tcp).window = 0;
        (*tcp).urgent = 0;
        (*tcp).check = 0;
        let check = !csum::fold(pseudo + sum_words(tcp as *const u16, 10));
        write_unaligned(&raw mut (*tcp).check, check);
    }
}

/// Cuts the frame after the IP header (`ip_len` bytes at `ip`) and the
/// TCP header.
#[inline(always)]
fn shorten(ctx: &XdpContext, ip: usize, ip_len: u16) {
    let l3 = ip - ctx.data();
    let delta = (l3 + usize::from(ip_len + TCP_LEN)) as i32 - (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: shrinking this program's frame.
    if delta < 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        // Could not shorten: the headers give the length; trailing bytes
        // are padding to the receiver.
    }
}
