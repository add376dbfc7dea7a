//! failover's XDP data path: forwards TCP/UDP for each service (VIP, port,
//! protocol) to a backend, rewrites replies and ICMP errors about them back
//! to the VIP, and counts every verdict and why it was taken.
#![no_std]
#![no_main]

mod complete;
mod conntrack;
mod counters;
mod egress;
mod fib;
mod icmp;
mod maps;
mod nat;
mod outcome;
mod parse;
mod reset;
mod watch;

use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_REDIRECT, XDP_TX},
    macros::xdp,
    programs::XdpContext,
};
use failover_common::{
    Backend, FAMILY_IPV4, Flow, FlowKey, PROTO_TCP, SERVICE_F_RESET_DEAD_FLOWS, Service,
    ServiceKey, flow_direction, programs, stats::reason,
};

use crate::{
    conntrack::NewFlow,
    counters::Towards,
    egress::{ingress_ifindex, next_hop, send, via_stack},
    fib::Lookup,
    maps::{CONNTRACK, PROGRAMS, SERVICES},
    nat::End,
    outcome::{Outcome, drop, pass},
    parse::{L3, ParseError, Parsed, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN},
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
    // SAFETY: bounds checked by the parser.
    let (src, dst) = unsafe { ((*parsed.l3.ip).src, (*parsed.l3.ip).dst) };
    let l4 = &parsed.l4;
    let key = FlowKey {
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        src_port_be: l4.src_port,
        dst_port_be: l4.dst_port,
        proto: l4.proto,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    // Tracked flows first: one lookup for every packet after a flow's first.
    let mut repick = false;
    if let Some(entry) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: a live LRU value.
        if unsafe { (*entry).direction } == flow_direction::REPLY {
            if conntrack::recorded_backend(entry).is_some() {
                if let Err(outcome) = from_backend_side(ctx, &parsed.l3, entry) {
                    return outcome;
                }
                return to_client(ctx, &parsed, entry, bytes);
            }
            // The backend's slot has another owner now: not a reply of any
            // live flow.
            let _ = CONNTRACK.remove(key);
        } else if let Some((backend_id, backend)) = conntrack::established(entry) {
            return to_backend(
                ctx,
                &parsed,
                &key,
                Route::Tracked {
                    entry,
                    backend_id,
                    backend,
                },
                bytes,
            );
        } else {
            repick = true;
        }
    }
    let service_key = ServiceKey {
        addr: [dst, 0, 0, 0],
        port_be: l4.dst_port,
        proto: l4.proto,
        family: FAMILY_IPV4,
    };
    if let Some(service) = SERVICES.get_ptr(service_key) {
        if repick {
            // SAFETY: the agent replaces values whole (RCU); we only read.
            let flags = unsafe { (*service).flags };
            // A fresh SYN reusing a dead flow's tuple is a new connection:
            // re-picked, not reset.
            let fresh_syn = l4.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
            if flags & SERVICE_F_RESET_DEAD_FLOWS != 0
                && l4.proto == PROTO_TCP
                && l4.tcp_flags & TCP_FLAG_RST == 0
                && !fresh_syn
                && reset::answer(ctx, &parsed)
            {
                let _ = CONNTRACK.remove(key);
                return Outcome {
                    action: XDP_TX,
                    reason: reason::TX_RESET,
                };
            }
            counters::reason(reason::EVENT_REPICK, bytes);
        }
        // SAFETY: the agent replaces values whole (RCU); we only read.
        return to_backend(
            ctx,
            &parsed,
            &key,
            Route::New {
                service: unsafe { &*service },
            },
            bytes,
        );
    }
    if repick {
        // A flow of a removed service: forget it.
        let _ = CONNTRACK.remove(key);
    }
    pass(reason::PASS_NO_SERVICE)
}

const fn parse_reason(err: ParseError) -> u32 {
    match err {
        ParseError::TruncatedEth => reason::PASS_TRUNCATED_ETH,
        ParseError::TruncatedVlan => reason::PASS_TRUNCATED_VLAN,
        ParseError::NotIpv4 => reason::PASS_NOT_IPV4,
        ParseError::TruncatedIpv4 => reason::PASS_TRUNCATED_IPV4,
        ParseError::BadIpv4Header => reason::PASS_BAD_IPV4_HEADER,
        ParseError::Fragment => reason::PASS_FRAGMENT,
        ParseError::NotTcpUdp => reason::PASS_NOT_TCP_UDP,
        ParseError::TruncatedL4 => reason::PASS_TRUNCATED_L4,
    }
}

/// How a client → VIP packet found its backend.
enum Route<'a> {
    /// A tracked flow whose backend may keep it.
    Tracked {
        entry: *mut Flow,
        backend_id: u32,
        backend: Backend,
    },
    /// A new flow, or a tracked one to re-pick: hash over the selection.
    New { service: &'a Service },
}

/// Client → VIP: follow or pick the backend, rewrite the destination.
#[inline(always)]
fn to_backend(
    ctx: &XdpContext,
    parsed: &Parsed,
    key: &FlowKey,
    route: Route,
    bytes: u64,
) -> Outcome {
    let ip = parsed.l3.ip;
    let l4 = &parsed.l4;
    // SAFETY: bounds checked by the parser.
    let (ttl, tos, tot_len) = unsafe { ((*ip).ttl, (*ip).tos, (*ip).tot_len) };
    if ttl <= 1 {
        return pass(reason::PASS_TTL_EXPIRED);
    }
    let ingress = ingress_ifindex(ctx);
    let (backend_id, backend, service_id, tracked) = match route {
        Route::Tracked {
            entry,
            backend_id,
            backend,
        } => {
            // SAFETY: a live LRU value.
            (
                backend_id,
                backend,
                unsafe { (*entry).service_id },
                Some(entry),
            )
        }
        Route::New { service } => {
            let Some((backend_id, backend)) = conntrack::pick(key, service, bytes) else {
                return drop(reason::DROP_NO_BACKEND);
            };
            let starts_flow = l4.proto != PROTO_TCP
                || l4.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
            if !starts_flow {
                counters::reason(reason::EVENT_MIDFLOW_PICK, bytes);
            }
            (backend_id, backend, service.id, None)
        }
    };

    let backend_addr = backend.addr[0];
    let backend_port = if backend.port_be != 0 {
        backend.port_be
    } else {
        l4.dst_port
    };
    let lookup = Lookup {
        ingress_ifindex: ingress,
        proto: l4.proto,
        tos,
        tot_len: u16::from_be(tot_len),
        src: key.src[0],
        dst: backend_addr,
        src_port: l4.src_port,
        dst_port: backend_port,
    };
    let hop = next_hop(ctx, tracked, &lookup);
    let via_stack = match via_stack(&hop) {
        Ok(via_stack) => via_stack,
        Err(outcome) => return outcome,
    };

    if tracked.is_none() {
        let reply = FlowKey {
            src: [backend_addr, 0, 0, 0],
            dst: key.src,
            src_port_be: backend_port,
            dst_port_be: l4.src_port,
            proto: l4.proto,
            family: FAMILY_IPV4,
            _pad: [0; 2],
        };
        conntrack::record(
            &NewFlow {
                forward: key,
                reply: &reply,
                service_id,
                backend_id,
                backend_generation: backend.generation,
                vip: key.dst[0],
                vip_port: l4.dst_port,
                hop: &hop,
                ingress_ifindex: ingress,
            },
            bytes,
        );
    }
    let partial = complete::is_partial(ctx, ip, l4, bytes);
    nat::rewrite(ip, l4, End::Destination, backend_addr, backend_port);
    if partial {
        complete::complete(ctx, ip, l4);
    }
    counters::traffic(service_id, backend_id, Towards::Backend, bytes);
    if via_stack {
        return pass(reason::PASS_NO_NEIGHBOUR);
    }
    let forwarded = if tracked.is_some() {
        reason::FWD_ESTABLISHED
    } else {
        reason::FWD_NEW_FLOW
    };
    send(ctx, &parsed.l3, hop, forwarded)
}

/// Whether a packet for a tracked reply entry came from where its backend
/// is; `Err` with the outcome when not.
#[inline(always)]
fn from_backend_side(ctx: &XdpContext, l3: &L3, entry: *mut Flow) -> Result<(), Outcome> {
    // Tagged frames are not checked: the route names the VLAN device, the
    // program sees its lower device.
    if !l3.tagged && !conntrack::reply_arrived_where_expected(entry, ingress_ifindex(ctx)) {
        return Err(drop(reason::DROP_REPLY_WRONG_INTERFACE));
    }
    Ok(())
}

/// An ICMP error about a tracked flow, from the backends' side, is
/// translated for the client and handed to the stack to forward (they are
/// rare); anything else passes.
#[inline(always)]
fn not_tcp_udp(ctx: &XdpContext, bytes: u64) -> Outcome {
    let Ok(l3) = parse::parse_l3(ctx) else {
        return pass(reason::PASS_NOT_TCP_UDP);
    };
    let Some(error) = icmp::parse_error(ctx, &l3) else {
        return pass(reason::PASS_NOT_TCP_UDP);
    };
    let Some(entry) = CONNTRACK.get_ptr_mut(icmp::reply_key(&error)) else {
        return pass(reason::PASS_NOT_TCP_UDP);
    };
    // SAFETY: a live LRU value; bounds checked by the parser.
    let (direction, dst) = unsafe { ((*entry).direction, (*l3.ip).dst) };
    // The error must be on its way to the client the flow belongs to.
    if direction != flow_direction::REPLY
        || dst != icmp::client(&error)
        || conntrack::recorded_backend(entry).is_none()
    {
        return pass(reason::PASS_NOT_TCP_UDP);
    }
    if let Err(outcome) = from_backend_side(ctx, &l3, entry) {
        return outcome;
    }
    // SAFETY: a live LRU value.
    let (vip, vip_port, service_id, backend_id) = unsafe {
        (
            (*entry).nat_addr[0],
            (*entry).nat_port_be,
            (*entry).service_id,
            (*entry).backend_id,
        )
    };
    icmp::translate_to_client(l3.ip, &error, vip, vip_port);
    counters::traffic(service_id, backend_id, Towards::Client, bytes);
    pass(reason::PASS_ICMP_TRANSLATED)
}

/// Backend → client on a tracked flow: put the VIP back as the source.
#[inline(always)]
fn to_client(ctx: &XdpContext, parsed: &Parsed, entry: *mut Flow, bytes: u64) -> Outcome {
    let (l3, l4) = (&parsed.l3, &parsed.l4);
    let ip = l3.ip;
    // SAFETY: bounds checked by the parser; `entry` is a live LRU value.
    let (ttl, tos, tot_len, client) = unsafe { ((*ip).ttl, (*ip).tos, (*ip).tot_len, (*ip).dst) };
    let (vip, vip_port, service_id, backend_id) = unsafe {
        (
            (*entry).nat_addr[0],
            (*entry).nat_port_be,
            (*entry).service_id,
            (*entry).backend_id,
        )
    };
    if ttl <= 1 {
        return pass(reason::PASS_TTL_EXPIRED);
    }
    let lookup = Lookup {
        ingress_ifindex: ingress_ifindex(ctx),
        proto: l3.proto,
        tos,
        tot_len: u16::from_be(tot_len),
        src: vip,
        dst: client,
        src_port: vip_port,
        dst_port: l4.dst_port,
    };
    let hop = next_hop(ctx, Some(entry), &lookup);
    let via_stack = match via_stack(&hop) {
        Ok(via_stack) => via_stack,
        Err(outcome) => return outcome,
    };
    let partial = complete::is_partial(ctx, ip, l4, bytes);
    nat::rewrite(ip, l4, End::Source, vip, vip_port);
    if partial {
        complete::complete(ctx, ip, l4);
    }
    counters::traffic(service_id, backend_id, Towards::Client, bytes);
    if via_stack {
        return pass(reason::PASS_NO_NEIGHBOUR);
    }
    send(ctx, l3, hop, reason::FWD_REPLY)
}

failover_ebpf::program_boilerplate!();
