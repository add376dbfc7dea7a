//! Backend → client: the backend's endpoint names its service's VIP in
//! `FO_REVERSE`, so a reply needs no per-flow state to be rewritten, and
//! the next hop towards the client comes from this CPU's cache by client
//! address. Only the backend's FIN or RST looks up the flow's entry, to
//! close it.

use aya_ebpf::programs::XdpContext;
use failover_common::{CachedHop, FlowKey, PROTO_TCP, ReverseNat, client_hop_slot, stats::reason};

use crate::{
    complete, conntrack,
    counters::{self, Towards},
    egress::{ingress_ifindex, next_hop, send, via_stack},
    evidence,
    family::Family,
    fib::{Lookup, NextHop},
    maps::{CLIENT_HOPS, FLOWS},
    nat::End,
    outcome::{Outcome, drop, pass},
    parse::{L3, Parsed, TCP_FLAG_FIN, TCP_FLAG_RST},
    redispatch,
};

/// Whether a packet with a backend endpoint's source came from where the
/// backend is; `Err` with the outcome when not (a spoofed or stray packet
/// is never rewritten to come from the VIP).
#[inline(always)]
pub fn from_backend_side<F: Family>(
    ingress: u32,
    l3: &L3<F>,
    reverse: *const ReverseNat,
) -> Result<(), Outcome> {
    // SAFETY: a live map value.
    let expected = unsafe { (*reverse).reply_ifindex };
    // Tagged frames are not checked: the route names the VLAN device, the
    // program sees its lower device.
    if !l3.tagged && expected != 0 && expected != ingress {
        return Err(drop(reason::DROP_REPLY_WRONG_INTERFACE));
    }
    Ok(())
}

/// This CPU's cached next hop towards `client`, its slot claimed for it
/// (a slot held for another client starts empty).
#[inline(always)]
fn client_hop<F: Family>(client: F::Addr) -> Option<*mut CachedHop> {
    let addr = F::key(client);
    let slot = CLIENT_HOPS.get_ptr_mut(client_hop_slot(&addr))?;
    // SAFETY: this CPU's slot; nothing else writes it.
    unsafe {
        if (*slot).addr != addr || (*slot).family != F::FAMILY {
            (*slot).addr = addr;
            (*slot).family = F::FAMILY;
            (*slot).hop.ifindex = 0;
        }
        Some(&raw mut (*slot).hop)
    }
}

/// Puts the VIP back as the source and forwards to the client.
#[inline(always)]
pub fn to_client<F: Family>(
    ctx: &XdpContext,
    parsed: &Parsed<F>,
    reverse: *const ReverseNat,
    bytes: u64,
) -> Outcome {
    let ingress = ingress_ifindex(ctx);
    if let Err(outcome) = from_backend_side(ingress, &parsed.l3, reverse) {
        return outcome;
    }
    let (l3, l4) = (&parsed.l3, &parsed.l4);
    let ip = l3.ip;
    let client = F::dst(ip);
    // SAFETY: `reverse` is a live map value.
    let (vip, vip_port, service_id, backend_id) = unsafe {
        (
            F::from_key(&raw const (*reverse).vip),
            (*reverse).vip_port_be,
            (*reverse).service_id,
            (*reverse).backend_id,
        )
    };
    if F::hop_limit(ip) <= 1 {
        return pass(reason::PASS_TTL_EXPIRED);
    }
    let now = conntrack::now();
    let key = FlowKey::new(
        F::FAMILY,
        F::key(client),
        F::key(vip),
        l4.dst_port,
        vip_port,
        l4.proto,
    );
    if l4.proto == PROTO_TCP
        && let Some(seq) = evidence::reply(backend_id, l4, &key, now)
        && let Some(outcome) = redispatch::refused(ctx, parsed, &key, (vip, vip_port), seq)
    {
        return outcome;
    }
    // A FIN or RST from the backend closes its flow; other replies leave
    // the entry alone (the client's packets keep it alive).
    if l4.tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST) != 0
        && let Some(entry) = FLOWS.get_ptr_mut(key)
        && !conntrack::expired(entry, now)
    {
        conntrack::touch(entry, l4.proto, l4.tcp_flags, now, bytes);
    }
    let cache = client_hop::<F>(client);
    let lookup = Lookup::<F> {
        ingress_ifindex: ingress,
        proto: l3.proto,
        tos: F::tos(ip),
        tot_len: F::packet_len(ip),
        src: vip,
        dst: client,
        src_port: vip_port,
        dst_port: l4.dst_port,
    };
    let (hop, _) = next_hop(ctx, cache, &lookup, now);
    if let NextHop::TooBig { mtu } = hop
        && !F::may_fragment(ip)
    {
        return F::too_big(ctx, l3, mtu);
    }
    let via_stack = match via_stack(&hop) {
        Ok(via_stack) => via_stack,
        Err(outcome) => return outcome,
    };
    complete::rewrite(ctx, l3, l4, End::Source, (vip, vip_port), bytes);
    counters::traffic(service_id, backend_id, Towards::Client, bytes);
    if let Some(reason) = via_stack {
        return pass(reason);
    }
    send(ctx, l3, hop, reason::FWD_REPLY, ingress)
}
