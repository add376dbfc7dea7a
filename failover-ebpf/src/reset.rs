//! TCP RST answers from the VIP, for packets of tracked flows whose backend
//! is gone when the service's dead-flow policy is `reset`: the client learns
//! at once that the connection is dead and reconnects, instead of waiting
//! for retransmission timeouts.
//!
//! Contract: `parsed` is a TCP frame from the parser. The frame is rewritten in
//! place into a 20-byte IPv4 + 20-byte TCP reply (RFC 793 reset generation:
//! with ACK, seq = their ack; without, ack = their seq + segment length) and
//! then shortened. Frames with IPv4 options are left alone (`false`).

use core::ptr::{read_unaligned, write_unaligned};

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use failover_common::{PROTO_TCP, csum};

use crate::parse::{
    EthHdr, Parsed, TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN, TcpHdr,
};

const IPV4_DF_BE: u16 = 0x4000u16.to_be();
const HEADERS: u16 = 40;

/// One's-complement sum of `words` 16-bit words at `ptr` (raw loads).
#[inline(always)]
fn sum_words(ptr: *const u16, words: usize) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < words {
        // SAFETY: the caller guarantees `words` words are in bounds.
        sum += u64::from(unsafe { read_unaligned(ptr.add(i)) });
        i += 1;
    }
    sum
}

/// Turns the frame into a RST to the client. Returns whether it did.
#[inline(always)]
pub fn answer(ctx: &XdpContext, parsed: &Parsed) -> bool {
    let ip = parsed.l3.ip;
    let tcp = parsed.l4.src_port_ptr as *mut TcpHdr;
    // SAFETY: the parser proved the Ethernet, 20-byte IPv4 and 20-byte TCP
    // headers are in the frame; all accesses below stay inside them.
    unsafe {
        if (*ip).version_ihl != 0x45 || (*ip).proto != PROTO_TCP {
            return false;
        }
        let tot_len = u16::from_be((*ip).tot_len);
        let data_offset = u16::from(((*tcp).data_offset >> 4) * 4).max(20);
        let flags = (*tcp).flags;
        let payload = tot_len.saturating_sub(20 + data_offset) as u32;
        let their_seq = u32::from_be((*tcp).seq);
        let their_ack = u32::from_be((*tcp).ack);
        let (seq, ack, out_flags) = if flags & TCP_FLAG_ACK != 0 {
            (their_ack, 0, TCP_FLAG_RST)
        } else {
            let syn_fin =
                u32::from(flags & TCP_FLAG_SYN != 0) + u32::from(flags & TCP_FLAG_FIN != 0);
            (
                0,
                their_seq.wrapping_add(payload).wrapping_add(syn_fin),
                TCP_FLAG_RST | TCP_FLAG_ACK,
            )
        };

        let eth: *mut EthHdr = parsed.l3.eth;
        let (dst_mac, src_mac) = ((*eth).dst, (*eth).src);
        (*eth).dst = src_mac;
        (*eth).src = dst_mac;

        let (src, dst) = ((*ip).src, (*ip).dst);
        (*ip).src = dst;
        (*ip).dst = src;
        (*ip).tot_len = HEADERS.to_be();
        (*ip).id = 0;
        (*ip).frag_off = IPV4_DF_BE;
        (*ip).ttl = 64;
        (*ip).check = 0;
        (*ip).check = !csum::fold(sum_words(ip as *const u16, 10));

        let (sport, dport) = ((*tcp).src_port, (*tcp).dst_port);
        (*tcp).src_port = dport;
        (*tcp).dst_port = sport;
        (*tcp).seq = seq.to_be();
        (*tcp).ack = ack.to_be();
        (*tcp).data_offset = 5 << 4;
        (*tcp).flags = out_flags;
        (*tcp).window = 0;
        (*tcp).urgent = 0;
        (*tcp).check = 0;
        let pseudo = u64::from(dst & 0xffff)
            + u64::from(dst >> 16)
            + u64::from(src & 0xffff)
            + u64::from(src >> 16)
            + u64::from(u16::from_ne_bytes([0, PROTO_TCP]))
            + u64::from(u16::from_ne_bytes(20u16.to_be_bytes()));
        let check = !csum::fold(pseudo + sum_words(tcp as *const u16, 10));
        write_unaligned(&raw mut (*tcp).check, check);

        let l3 = ip as usize - ctx.data();
        let delta = (l3 + HEADERS as usize) as i32 - (ctx.data_end() - ctx.data()) as i32;
        if delta < 0 && bpf_xdp_adjust_tail(ctx.ctx, delta) != 0 {
            // Could not shorten: the headers say 40 bytes; trailing bytes are
            // padding to the receiver.
        }
    }
    true
}
