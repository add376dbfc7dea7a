//! ICMP errors about tracked flows: which way one goes, and whether it may
//! (`icmp` rewrites it). Both families; the programs that are handed
//! frames neither TCP nor UDP call [`icmp_error`].

use aya_ebpf::programs::XdpContext;
use failover_common::stats::reason;

use crate::{
    conntrack,
    counters::{self, Towards},
    egress, evidence,
    family::Family,
    icmp::{self, IcmpError},
    maps::{FLOWS, REVERSE},
    outcome::{Outcome, drop, pass},
    parse::L3,
    ratelimit, reply,
};

/// An ICMP error from a backend's side about a packet the data path could
/// have sent (client → a backend endpoint, the error on its way to that
/// client) is translated for the client and handed to the stack to forward
/// (they are rare); one from the path towards a client about a reply, for
/// the backend; anything else passes. Like a reply, the first needs no
/// flow entry: an error about a SYN (a TCP traceroute to the VIP) is
/// translated.
#[inline(always)]
pub fn icmp_error<F: Family>(ctx: &XdpContext, l3: &L3<F>, bytes: u64) -> Outcome {
    let Some(error) = icmp::parse_error(ctx, l3) else {
        return pass(reason::PASS_NOT_TCP_UDP);
    };
    let Some(reverse) = REVERSE.get_ptr(icmp::reverse_key(&error)) else {
        return about_a_reply(l3, &error, bytes).unwrap_or(pass(reason::PASS_NOT_TCP_UDP));
    };
    // The error must be on its way to the client the embedded packet came
    // from, and from where the backend is.
    if F::dst(l3.ip) != icmp::client(&error) {
        return pass(reason::PASS_NOT_TCP_UDP);
    }
    if let Err(outcome) = reply::from_backend_side(egress::ingress_ifindex(ctx), l3, reverse) {
        return outcome;
    }
    // SAFETY: a live map value.
    let (vip, vip_port, service_id, backend_id) = unsafe {
        (
            F::from_key(&raw const (*reverse).vip),
            (*reverse).vip_port_be,
            (*reverse).service_id,
            (*reverse).backend_id,
        )
    };
    if F::is_failure(icmp::kind(&error), icmp::code(&error)) {
        evidence::unreachable(backend_id);
    }
    if !ratelimit::translation_allowed(service_id) {
        return drop(reason::DROP_ICMP_RATE);
    }
    icmp::translate_to_client(l3.ip, &error, vip, vip_port);
    counters::traffic(service_id, backend_id, Towards::Client, bytes);
    pass(reason::PASS_ICMP_TRANSLATED)
}

/// An ICMP error from the path towards a client, addressed to the VIP,
/// about a reply of a tracked flow: translated for the flow's backend and
/// handed to the stack to forward; `None` for anything else.
#[inline(always)]
fn about_a_reply<F: Family>(l3: &L3<F>, error: &IcmpError<F>, bytes: u64) -> Option<Outcome> {
    let key = icmp::reply_flow_key(error);
    if F::key(F::dst(l3.ip)) != key.dst {
        return None;
    }
    let entry = FLOWS.get_ptr_mut(key)?;
    if conntrack::expired(entry, conntrack::now()) {
        return None;
    }
    let (backend_id, backend) = conntrack::established::<F>(entry)?;
    let port = if backend.port_be != 0 {
        backend.port_be
    } else {
        key.dst_port_be
    };
    // SAFETY: a live LRU value.
    let service_id = unsafe { (*entry).service_id };
    if !ratelimit::translation_allowed(service_id) {
        return Some(drop(reason::DROP_ICMP_RATE));
    }
    icmp::translate_to_backend(l3.ip, error, backend.addr, port);
    counters::traffic(service_id, backend_id, Towards::Backend, bytes);
    Some(pass(reason::PASS_ICMP_TRANSLATED))
}
