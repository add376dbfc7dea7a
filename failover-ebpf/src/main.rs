//! failover's XDP data path: forwards TCP/UDP for each service (VIP, port,
//! protocol) to a backend, rewrites replies and ICMP errors about them back
//! to the VIP, and counts every verdict and why it was taken.
#![no_std]
#![no_main]

mod client;
mod complete;
mod conntrack;
mod counters;
mod egress;
mod family;
mod fib;
mod icmp;
mod ipv6;
mod maps;
mod nat;
mod outcome;
mod parse;
mod pmtu;
mod ratelimit;
mod reply;
mod reset;
mod watch;

use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_REDIRECT},
    macros::xdp,
    programs::XdpContext,
};
use failover_common::{
    ADDRESS_F_BACKEND, ADDRESS_F_VIP, AddrBe, ReverseKey, address_slot, programs, stats::reason,
};

use crate::{
    counters::Towards,
    family::{Family, V4},
    maps::{ADDRESSES, FLOWS, PROGRAMS, REVERSE},
    outcome::{Outcome, drop, pass},
    parse::{ParseError, Parsed},
};

/// The data path. Attach to every interface that carries service traffic or
/// backend replies.
#[xdp]
pub fn failover(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    finish(process(&ctx, bytes), bytes)
}

/// IPv4 that is neither TCP nor UDP, handed over by [`failover`] with a
/// tail call: an ICMP error about a tracked flow is translated, anything
/// else passes. A program of its own, so its code and stack stay out of the
/// TCP/UDP path (inlined there, it cost every packet about 12 ns, measured
/// with `failover-bench --only datapath`; as a subprogram it did not fit the
/// verifier's stack).
#[xdp]
pub fn failover_not_tcp_udp(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    finish(not_tcp_udp(&ctx, bytes), bytes)
}

/// IPv6, handed over by [`failover`] with a tail call: the same data path
/// compiled for IPv6 (`family`), a program of its own so IPv4 pays
/// nothing for it.
#[xdp]
pub fn failover_ipv6(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    finish(process_ipv6(&ctx, bytes), bytes)
}

/// Counts the verdict and its reason; returns the action.
#[inline(always)]
fn finish(outcome: Outcome, bytes: u64) -> u32 {
    counters::verdict(outcome.action, bytes);
    counters::reason(outcome.reason, bytes);
    if outcome.action == XDP_REDIRECT {
        counters::remember_redirect(outcome.reason, bytes);
    }
    outcome.action
}

/// Passes everything. Attached to the far end of veth pairs (XDP_TX and
/// redirect into a veth need an XDP program on the peer) and used as the
/// empty-program floor in benchmarks.
#[xdp]
pub fn failover_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[inline(always)]
fn process(ctx: &XdpContext, bytes: u64) -> Outcome {
    let l3 = match parse::parse_l3(ctx) {
        Ok(l3) => l3,
        Err(ParseError::Ipv6) => {
            // SAFETY: a tail call; it returns only when it fails (the agent
            // has not set the slot yet), and then the frame passes.
            let _ = unsafe { PROGRAMS.tail_call(ctx, programs::IPV6) };
            return pass(reason::PASS_NOT_IP);
        }
        Err(err) => return pass(parse_reason(err)),
    };
    let parsed = match parse::parse_l4(ctx, l3) {
        Ok(parsed) => parsed,
        Err(ParseError::NotTcpUdp) => {
            // SAFETY: a tail call; it returns only when it fails (the agent
            // has not set the slot yet), and then the frame passes.
            let _ = unsafe { PROGRAMS.tail_call(ctx, programs::NOT_TCP_UDP) };
            return pass(reason::PASS_NOT_TCP_UDP);
        }
        Err(err) => return pass(parse_reason(err)),
    };
    serve(ctx, &parsed, bytes)
}

#[inline(always)]
fn process_ipv6(ctx: &XdpContext, bytes: u64) -> Outcome {
    let l3 = match ipv6::parse(ctx) {
        Ok(l3) => l3,
        Err(err) => return pass(parse_reason(err)),
    };
    let parsed = match parse::parse_l4(ctx, l3) {
        Ok(parsed) => parsed,
        Err(ParseError::NotTcpUdp) => {
            let reason = match ipv6::icmp_type(ctx, &l3) {
                Some(ipv6::ND_FIRST..=ipv6::ND_LAST) => reason::PASS_NEIGHBOUR_DISCOVERY,
                _ => reason::PASS_NOT_TCP_UDP,
            };
            return pass(reason);
        }
        Err(err) => return pass(parse_reason(err)),
    };
    serve(ctx, &parsed, bytes)
}

/// A parsed TCP/UDP packet: to a service, a reply of one, or neither.
#[inline(always)]
fn serve<F: Family>(ctx: &XdpContext, parsed: &Parsed<F>, bytes: u64) -> Outcome {
    let (src, dst) = (F::key(F::src(parsed.l3.ip)), F::key(F::dst(parsed.l3.ip)));
    // The address filter first: traffic that is neither to a VIP nor from a
    // backend (most of an edge host's) passes without a hash lookup.
    if address_flags(&dst) & ADDRESS_F_VIP != 0
        && let Some(outcome) = client::from_client(ctx, parsed, bytes)
    {
        return outcome;
    }
    if address_flags(&src) & ADDRESS_F_BACKEND != 0 {
        let l4 = &parsed.l4;
        let endpoint = ReverseKey::new(F::FAMILY, src, l4.src_port, l4.proto);
        if let Some(reverse) = REVERSE.get_ptr(endpoint) {
            return reply::to_client(ctx, parsed, reverse, bytes);
        }
    }
    pass(reason::PASS_NO_SERVICE)
}

/// The address filter's flags for `addr` (`ADDRESS_F_*`).
#[inline(always)]
fn address_flags(addr: &AddrBe) -> u32 {
    ADDRESSES.get(address_slot(addr)).copied().unwrap_or(0)
}

const fn parse_reason(err: ParseError) -> u32 {
    match err {
        ParseError::TruncatedEth => reason::PASS_TRUNCATED_ETH,
        ParseError::TruncatedVlan => reason::PASS_TRUNCATED_VLAN,
        ParseError::NotIp | ParseError::Ipv6 => reason::PASS_NOT_IP,
        ParseError::TruncatedIpv4 => reason::PASS_TRUNCATED_IPV4,
        ParseError::BadIpv4Header => reason::PASS_BAD_IPV4_HEADER,
        ParseError::Fragment => reason::PASS_FRAGMENT,
        ParseError::NotTcpUdp => reason::PASS_NOT_TCP_UDP,
        ParseError::TruncatedL4 => reason::PASS_TRUNCATED_L4,
        ParseError::TruncatedIpv6 => reason::PASS_TRUNCATED_IPV6,
        ParseError::BadIpv6Header => reason::PASS_BAD_IPV6_HEADER,
        ParseError::Ipv6Extensions => reason::PASS_IPV6_EXTENSIONS,
    }
}

/// An ICMP error from a backend's side about a packet the data path could
/// have sent (client → a backend endpoint, the error on its way to that
/// client) is translated for the client and handed to the stack to forward
/// (they are rare); anything else passes. Like a reply, it needs no flow
/// entry: an error about a SYN (a TCP traceroute to the VIP) is translated.
#[inline(always)]
fn not_tcp_udp(ctx: &XdpContext, bytes: u64) -> Outcome {
    let Ok(l3) = parse::parse_l3(ctx) else {
        return pass(reason::PASS_NOT_TCP_UDP);
    };
    let Some(error) = icmp::parse_error(ctx, &l3) else {
        return pass(reason::PASS_NOT_TCP_UDP);
    };
    let Some(reverse) = REVERSE.get_ptr(icmp::reverse_key(&error)) else {
        return about_a_reply(&l3, &error, bytes).unwrap_or(pass(reason::PASS_NOT_TCP_UDP));
    };
    // SAFETY: bounds checked by the parser.
    let dst = unsafe { (*l3.ip).dst };
    // The error must be on its way to the client the embedded packet came
    // from, and from where the backend is.
    if dst != icmp::client(&error) {
        return pass(reason::PASS_NOT_TCP_UDP);
    }
    if let Err(outcome) = reply::from_backend_side(egress::ingress_ifindex(ctx), &l3, reverse) {
        return outcome;
    }
    // SAFETY: a live map value.
    let (vip, vip_port, service_id, backend_id) = unsafe {
        (
            (*reverse).vip[0],
            (*reverse).vip_port_be,
            (*reverse).service_id,
            (*reverse).backend_id,
        )
    };
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
fn about_a_reply(l3: &parse::L3<V4>, error: &icmp::IcmpError, bytes: u64) -> Option<Outcome> {
    let key = icmp::reply_flow_key(error);
    // SAFETY: bounds checked by the parser.
    let dst = unsafe { (*l3.ip).dst };
    if dst != key.dst[0] {
        return None;
    }
    let entry = FLOWS.get_ptr_mut(key)?;
    if conntrack::expired(entry, conntrack::now()) {
        return None;
    }
    let (backend_id, backend) = conntrack::established::<V4>(entry)?;
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

failover_ebpf::program_boilerplate!();
