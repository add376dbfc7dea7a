//! Where a rewritten packet goes: its next hop (cached in the flow or
//! looked up), through the stack when the program cannot send it itself,
//! otherwise out with router TTL and next-hop MACs.

use aya_ebpf::{bindings::xdp_action::XDP_TX, helpers::bpf_redirect, programs::XdpContext};
use failover_common::{CachedHop, EGRESS_F_VIA_STACK, EGRESS_SLOTS, stats::reason};

use crate::{
    conntrack,
    family::Family,
    fib::{self, Lookup, NextHop},
    maps::EGRESS,
    nat,
    outcome::{Outcome, drop, pass},
    parse::L3,
};

/// The next hop from `cache` (the flow's for its direction, or the
/// backend's for a new flow) when fresh, else from the route lookup (then
/// cached). The flag says whether the route lookup ran.
#[inline(always)]
pub fn next_hop<F: Family>(
    ctx: &XdpContext,
    cache: Option<*mut CachedHop>,
    lookup: &Lookup<F>,
    now: u64,
) -> (NextHop, bool) {
    let ingress = lookup.ingress_ifindex;
    if let Some(cache) = cache
        && let Some(hop) = conntrack::cached_hop(cache, ingress, lookup.tot_len, now)
    {
        return (hop, false);
    }
    let hop = fib::next_hop(ctx, lookup);
    if let Some(cache) = cache {
        conntrack::store_hop(cache, &hop, ingress, lookup.tot_len, now);
    }
    (hop, true)
}

/// Whether the rewritten packet goes through the stack, and why (an
/// unresolved neighbour; too big for the next hop but fragmentable); `Err`
/// with the outcome when it is not forwarded at all. A too-big packet
/// that may not be fragmented is answered before this (`pmtu`).
#[inline(always)]
pub fn via_stack(hop: &NextHop) -> Result<Option<u32>, Outcome> {
    match *hop {
        NextHop::Drop(reason) => Err(drop(reason)),
        NextHop::PassUntouched(reason) => Err(pass(reason)),
        NextHop::ResolveInStack { .. } => Ok(Some(reason::PASS_NO_NEIGHBOUR)),
        NextHop::TooBig { .. } => Ok(Some(reason::PASS_TOO_BIG)),
        NextHop::Forward { .. } => Ok(None),
    }
}

/// Finishes a forwarded packet: router TTL, next-hop MACs, then XDP_TX when
/// it leaves where it came in (`ingress`, read once by the caller: the
/// verifier refuses a derived context pointer kept across the program), a
/// redirect otherwise.
#[inline(always)]
pub fn send<F: Family>(
    ctx: &XdpContext,
    l3: &L3<F>,
    hop: NextHop,
    reason: u32,
    ingress: u32,
) -> Outcome {
    let NextHop::Forward {
        ifindex,
        src_mac,
        dst_mac,
    } = hop
    else {
        return pass(reason);
    };
    if ifindex != ingress && egress_via_stack(ifindex) {
        // The kernel drops frames redirected there: let the stack forward
        // the rewritten packet (it decrements the TTL and sets the MACs).
        return pass(reason::PASS_VIA_STACK);
    }
    F::decrement_hop_limit(l3.ip);
    if l3.tagged {
        // The route names an untagged device (a VLAN device cannot take
        // XDP frames and goes through the stack): the tag comes off.
        if !nat::strip_tag(ctx, src_mac, dst_mac) {
            // Cannot happen for a tag we parsed; the stack can forward the
            // rewritten, still tagged packet.
            return pass(reason::PASS_VIA_STACK);
        }
    } else {
        nat::set_macs(l3.eth, src_mac, dst_mac);
    }
    if ifindex == ingress {
        return Outcome {
            action: XDP_TX,
            reason,
        };
    }
    // SAFETY: plain helper call; returns XDP_REDIRECT, or XDP_ABORTED for bad flags.
    let action = unsafe { bpf_redirect(ifindex, 0) } as u32;
    Outcome { action, reason }
}

/// Whether the agent marked `ifindex` as dropping redirected frames.
#[inline(always)]
fn egress_via_stack(ifindex: u32) -> bool {
    EGRESS
        .get(ifindex % EGRESS_SLOTS)
        .is_some_and(|e| e.ifindex == ifindex && e.flags & EGRESS_F_VIA_STACK != 0)
}

#[inline(always)]
pub fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    ctx.ingress_ifindex() as u32
}
