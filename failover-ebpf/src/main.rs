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
mod evidence;
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
mod redispatch;
mod reply;
mod reset;
mod syns;
mod translate;
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
    family::Family,
    maps::{ADDRESSES, PROGRAMS, REVERSE},
    outcome::{Outcome, pass},
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
/// tail call: an ICMP error about a tracked flow is translated
/// (`translate`), anything else passes. A program of its own, so its code and stack stay out of the
/// TCP/UDP path (inlined there, it cost every packet about 12 ns, measured
/// with `failover-bench --only datapath`; as a subprogram it did not fit the
/// verifier's stack).
#[xdp]
pub fn failover_not_tcp_udp(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let outcome = match parse::parse_l3(&ctx) {
        Ok(l3) => translate::icmp_error(&ctx, &l3, bytes),
        Err(_) => pass(reason::PASS_NOT_TCP_UDP),
    };
    finish(outcome, bytes)
}

/// ICMPv6 other than neighbour discovery, handed over by [`failover_ipv6`]
/// with a tail call, as [`failover_not_tcp_udp`] is for IPv4.
#[xdp]
pub fn failover_ipv6_not_tcp_udp(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let outcome = match ipv6::parse(&ctx) {
        Ok(l3) => translate::icmp_error(&ctx, &l3, bytes),
        Err(_) => pass(reason::PASS_NOT_TCP_UDP),
    };
    finish(outcome, bytes)
}

/// IPv6, handed over by [`failover`] with a tail call: the same data path
/// compiled for IPv6 (`family`), a program of its own so IPv4 pays
/// nothing for it.
#[xdp]
pub fn failover_ipv6(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    finish(process_ipv6(&ctx, bytes), bytes)
}

/// An IPv4 SYN redispatch acts on, handed over by [`failover`] (a
/// client's repeated SYN) or by itself (a backend's RST rebuilt into the
/// SYN) with a tail call (`redispatch`).
#[xdp]
pub fn failover_redispatch(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let outcome = parse::parse_l3(&ctx)
        .and_then(|l3| parse::parse_l4(&ctx, l3))
        .ok()
        .and_then(|parsed| client::repeated_syn(&ctx, &parsed, bytes))
        .unwrap_or(pass(reason::PASS_NO_SERVICE));
    finish(outcome, bytes)
}

/// The same for IPv6, handed over by [`failover_ipv6`].
#[xdp]
pub fn failover_ipv6_redispatch(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let outcome = ipv6::parse(&ctx)
        .and_then(|l3| parse::parse_l4(&ctx, l3))
        .ok()
        .and_then(|parsed| client::repeated_syn(&ctx, &parsed, bytes))
        .unwrap_or(pass(reason::PASS_NO_SERVICE));
    finish(outcome, bytes)
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
            return match ipv6::icmp_type(ctx, &l3) {
                Some(ipv6::ND_FIRST..=ipv6::ND_LAST) => pass(reason::PASS_NEIGHBOUR_DISCOVERY),
                Some(_) => {
                    // SAFETY: a tail call, as in `process`.
                    let _ = unsafe { PROGRAMS.tail_call(ctx, programs::IPV6_NOT_TCP_UDP) };
                    pass(reason::PASS_NOT_TCP_UDP)
                }
                None => pass(reason::PASS_NOT_TCP_UDP),
            };
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

failover_ebpf::program_boilerplate!();
