//! In-band evidence of a backend's health (`failover_common::evidence`):
//! SYNs sent to it, SYN-ACKs and RSTs answering a SYN from it, ICMP
//! unreachable from its side. Counted on packets that are already rare; a
//! reply that is neither a SYN-ACK nor a RST costs one flags test.

use failover_common::{
    Evidence, FlowKey,
    hash::{FLOW_HASH_SEED, flow_hash},
};

use crate::{
    maps::EVIDENCE,
    parse::{L4, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN, tcp_seq_ack},
    syns,
};

#[inline(always)]
fn bump(backend_id: u32, count: impl FnOnce(&mut Evidence)) {
    if let Some(evidence) = EVIDENCE.get_ptr_mut(backend_id) {
        // SAFETY: this CPU's slot.
        count(unsafe { &mut *evidence });
    }
}

/// A SYN of a new connection went to the backend.
#[inline(always)]
pub fn syn_sent(backend_id: u32) {
    bump(backend_id, |e| e.syns += 1);
}

/// An ICMP destination unreachable from the backend's side about a packet
/// sent to it.
#[inline(always)]
pub fn unreachable(backend_id: u32) {
    bump(backend_id, |e| e.unreachable += 1);
}

/// A TCP packet from the backend to the client of flow `key` (client →
/// VIP): a SYN-ACK counts (and marks the handshake answered); so does a RST
/// answering the flow's SYN exactly (remembered unrecorded and unanswered,
/// sent to this backend, acknowledged as its sequence number plus one).
/// Any other RST — an application closing an established connection, a
/// live backend's answer to a client's repeated SYN — counts nothing.
/// Returns the refused SYN's sequence number if redispatch is not done
/// with it (`redispatch` may send it elsewhere).
#[inline(always)]
pub fn reply(backend_id: u32, l4: &L4, key: &FlowKey, now: u64) -> Option<u32> {
    let flags = l4.tcp_flags;
    if flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN | TCP_FLAG_ACK {
        bump(backend_id, |e| e.syn_acks += 1);
        syns::syn_acked(flow_hash(key, FLOW_HASH_SEED));
    } else if flags & (TCP_FLAG_RST | TCP_FLAG_ACK) == TCP_FLAG_RST | TCP_FLAG_ACK {
        let (_, ack) = tcp_seq_ack(l4);
        let settled = syns::syn_answered(flow_hash(key, FLOW_HASH_SEED), backend_id, ack, now)?;
        bump(backend_id, |e| e.syn_resets += 1);
        return (!settled).then_some(ack.wrapping_sub(1));
    }
    None
}
