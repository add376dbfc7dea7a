//! SYN redispatch (`SERVICE_F_REDISPATCH`), HAProxy's `option redispatch`
//! at L4: a backend that refuses a new connection does not get to tell the
//! client.
//!
//! - A RST that answers a SYN exactly (`evidence::reply`) is turned back
//!   into the client's SYN — client → VIP, the SYN's sequence number —
//!   and handed by a tail call to the redispatch program of its family
//!   (`programs::REDISPATCH`, `IPV6_REDISPATCH`): the client path for a
//!   repeated, unanswered SYN.
//! - So is a repeated SYN (the client's retransmission) whose first went
//!   to a backend that never answered: it goes to another backend of the
//!   service, the selection without it, else `FO_SPARES`. Programs of
//!   their own, so the main path's verification does not carry them.
//!
//! Each SYN is redispatched once (`SynSeen::REDISPATCHED`, and a RST is
//! rebuilt once: `SynSeen::REFUSED`): a second refusal reaches the client,
//! and so does the first when no other backend is there. What it keeps per flow: nothing beyond the
//! SYN memory every SYN writes anyway. What it costs: a rebuilt SYN carries
//! only an MSS option, so that connection runs without window scaling,
//! SACK or timestamps (both ends agree on that from the handshake).

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use failover_common::{
    FlowKey, PROTO_TCP, SERVICE_F_REDISPATCH, ServiceKey, csum,
    hash::{FLOW_HASH_SEED, flow_hash},
    stats::reason,
};

use crate::{
    family::{Family, V4},
    ipv6::{IPV6_LEN, Ipv6Hdr, V6},
    maps::{PROGRAMS, SERVICES},
    outcome::{Outcome, drop},
    parse::{ETH_LEN, Ipv4Hdr, Parsed, TCP_FLAG_SYN, TcpHdr, VLAN_LEN, ptr_at},
    reset::sum_words,
    syns,
};

const IPV4_DF_BE: u16 = 0x4000u16.to_be();
/// What the rebuilt SYN announces (the client's own options are not
/// known here): a segment that fits links with tunnel or PPPoE overhead,
/// so a path whose MTU discovery is broken still carries it, and the
/// largest unscaled window.
const MSS_V4: u16 = 1360;
const MSS_V6: u16 = 1220;
const WINDOW: u16 = 65535;

/// A SYN's TCP header with one MSS option.
#[repr(C)]
struct SynHdr {
    tcp: TcpHdr,
    /// Kind 2, length 4, the MSS (network order).
    mss: [u8; 4],
}
const SYN_LEN: u16 = size_of::<SynHdr>() as u16;

/// What rebuilding a SYN did to the frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Rebuilt {
    /// Nothing: the frame is not one this can rebuild (IP options, IPv6
    /// extension headers).
    Untouched,
    /// The frame is the client's SYN to the VIP.
    Syn,
    /// The frame was resized but could not be written: it is lost (the
    /// client's own retransmission is redispatched instead).
    Lost,
}

/// The backend's RST (of flow `key`, client → `vip`:`vip_port`) answered
/// the SYN with sequence number `seq`: if the service redispatches, the
/// frame becomes that SYN again and goes through the client path, which
/// sends it elsewhere. `None`: the RST goes on to the client.
#[inline(always)]
pub fn refused<F: Family>(
    ctx: &XdpContext,
    parsed: &Parsed<F>,
    key: &FlowKey,
    (vip, vip_port_be): (F::Addr, u16),
    seq: u32,
) -> Option<Outcome> {
    let service = ServiceKey {
        addr: F::key(vip),
        port_be: vip_port_be,
        proto: PROTO_TCP,
        family: F::FAMILY,
    };
    // SAFETY: the agent replaces values whole; we only read.
    let flags = unsafe { (*SERVICES.get_ptr(service)?).flags };
    if flags & SERVICE_F_REDISPATCH == 0 {
        return None;
    }
    // Marked in this program's SYN memory: the SYN may go through a newer
    // program with a memory of its own (an agent replacing the program),
    // and this one must not rebuild the next RST again.
    syns::mark_refused(flow_hash(key, FLOW_HASH_SEED));
    match F::rebuild_syn(ctx, parsed, vip, vip_port_be, seq) {
        Rebuilt::Untouched => return None,
        Rebuilt::Syn => {
            // SAFETY: a tail call; it returns only when it fails (the
            // agent has not filled the slot).
            let _ = unsafe { PROGRAMS.tail_call(ctx, F::REDISPATCH) };
        }
        Rebuilt::Lost => {}
    }
    // The client's own retransmission of the SYN is redispatched instead.
    Some(drop(reason::DROP_NO_BACKEND))
}

/// The frame's length from the IP header on, set to `len` bytes.
#[inline(always)]
fn resize(ctx: &XdpContext, l3_offset: usize, len: u16) -> bool {
    let delta = (l3_offset + usize::from(len)) as i32 - (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: resizing this program's frame (by a few bytes at most when
    // it grows: a RST is the smallest segment there is).
    delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } == 0
}

/// Writes the SYN's TCP header (from `client_port` to `vip_port_be`)
/// with its checksum over `pseudo`.
///
/// # Safety
/// `syn` points at [`SYN_LEN`] bytes in the frame.
#[inline(always)]
unsafe fn write_syn(
    syn: *mut SynHdr,
    client_port: u16,
    vip_port_be: u16,
    seq: u32,
    mss: u16,
    pseudo: u64,
) {
    // SAFETY: per the contract.
    unsafe {
        let tcp = &raw mut (*syn).tcp;
        (*tcp).src_port = client_port;
        (*tcp).dst_port = vip_port_be;
        (*tcp).seq = seq.to_be();
        (*tcp).ack = 0;
        (*tcp).data_offset = ((SYN_LEN / 4) as u8) << 4;
        (*tcp).flags = TCP_FLAG_SYN;
        (*tcp).window = WINDOW.to_be();
        (*tcp).urgent = 0;
        (*tcp).check = 0;
        let [hi, lo] = mss.to_be_bytes();
        (*syn).mss = [2, 4, hi, lo];
        let check = !csum::fold(pseudo + sum_words(syn as *const u16, usize::from(SYN_LEN / 2)));
        core::ptr::write_unaligned(&raw mut (*tcp).check, check);
    }
}

/// The IP header's offset (constants, for the verifier).
#[inline(always)]
fn l3_offset<F: Family>(parsed: &Parsed<F>) -> usize {
    if parsed.l3.tagged {
        ETH_LEN + VLAN_LEN
    } else {
        ETH_LEN
    }
}

/// Rebuilds an IPv4 RST (backend → client) as the client's SYN to the
/// VIP. Frames with IP options are left alone.
#[inline(always)]
pub fn syn_v4(
    ctx: &XdpContext,
    parsed: &Parsed<V4>,
    vip: u32,
    vip_port_be: u16,
    seq: u32,
) -> Rebuilt {
    let ip = parsed.l3.ip;
    // SAFETY: the parser proved the IPv4 header is in the frame.
    let client = unsafe {
        if (*ip).version_ihl != 0x45 || (*ip).proto != PROTO_TCP {
            return Rebuilt::Untouched;
        }
        (*ip).dst
    };
    let client_port = parsed.l4.dst_port;
    let offset = l3_offset(parsed);
    // Every packet pointer is stale from here on.
    if !resize(ctx, offset, 20 + SYN_LEN) {
        return Rebuilt::Lost;
    }
    let (Some(ip), Some(syn)) = (
        ptr_at::<Ipv4Hdr>(ctx, offset),
        ptr_at::<SynHdr>(ctx, offset + 20),
    ) else {
        return Rebuilt::Lost;
    };
    // SAFETY: both bounds-checked just above.
    unsafe {
        (*ip).src = client;
        (*ip).dst = vip;
        (*ip).tot_len = (20 + SYN_LEN).to_be();
        (*ip).id = 0;
        (*ip).frag_off = IPV4_DF_BE;
        (*ip).ttl = 64;
        (*ip).check = 0;
        (*ip).check = !csum::fold(sum_words(ip as *const u16, 10));
        let pseudo = V4::pseudo_sum(ip, PROTO_TCP, SYN_LEN);
        write_syn(syn, client_port, vip_port_be, seq, MSS_V4, pseudo);
    }
    Rebuilt::Syn
}

/// Rebuilds an IPv6 RST without extension headers as the client's SYN to
/// the VIP.
#[inline(always)]
pub fn syn_v6(
    ctx: &XdpContext,
    parsed: &Parsed<V6>,
    vip: [u32; 4],
    vip_port_be: u16,
    seq: u32,
) -> Rebuilt {
    let offset = l3_offset(parsed);
    if parsed.l3.proto != PROTO_TCP || parsed.l3.payload != offset + IPV6_LEN {
        return Rebuilt::Untouched;
    }
    // SAFETY: the parser proved the IPv6 header is in the frame.
    let client = unsafe { (*parsed.l3.ip).dst };
    let client_port = parsed.l4.dst_port;
    // Every packet pointer is stale from here on.
    if !resize(ctx, offset, IPV6_LEN as u16 + SYN_LEN) {
        return Rebuilt::Lost;
    }
    let (Some(ip), Some(syn)) = (
        ptr_at::<Ipv6Hdr>(ctx, offset),
        ptr_at::<SynHdr>(ctx, offset + IPV6_LEN),
    ) else {
        return Rebuilt::Lost;
    };
    // SAFETY: both bounds-checked just above.
    unsafe {
        (*ip).src = client;
        (*ip).dst = vip;
        (*ip).vtc_flow = (6u32 << 28).to_be();
        (*ip).payload_len = SYN_LEN.to_be();
        (*ip).next_header = PROTO_TCP;
        (*ip).hop_limit = 64;
        let pseudo = V6::pseudo_sum(ip, PROTO_TCP, SYN_LEN);
        write_syn(syn, client_port, vip_port_be, seq, MSS_V6, pseudo);
    }
    Rebuilt::Syn
}
