//! failover's XDP data path: forwards TCP/UDP for each service (VIP, port,
//! protocol) to a backend, rewrites replies back to the VIP, and counts every
//! verdict and why it was taken.
#![no_std]
#![no_main]

mod complete;
mod conntrack;
mod counters;
mod fib;
mod maps;
mod nat;
mod parse;
mod reset;
mod watch;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
    helpers::bpf_redirect,
    macros::xdp,
    programs::XdpContext,
};
use failover_common::{
    Backend, EGRESS_F_VIA_STACK, EGRESS_SLOTS, FAMILY_IPV4, Flow, FlowKey, PROTO_TCP,
    SERVICE_F_RESET_DEAD_FLOWS, Service, ServiceKey, flow_direction, stats::reason,
};

use crate::{
    conntrack::NewFlow,
    counters::Towards,
    fib::{Lookup, NextHop},
    maps::{CONNTRACK, EGRESS, SERVICES},
    nat::End,
    parse::{ParseError, Parsed, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN},
};

/// A verdict and the one outcome reason that explains it.
struct Outcome {
    action: u32,
    reason: u32,
}

const fn pass(reason: u32) -> Outcome {
    Outcome {
        action: XDP_PASS,
        reason,
    }
}

const fn drop(reason: u32) -> Outcome {
    Outcome {
        action: XDP_DROP,
        reason,
    }
}

/// The data path. Attach to every interface that carries service traffic or
/// backend replies.
#[xdp]
pub fn failover(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let outcome = process(&ctx, bytes);
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
    let parsed = match parse::parse(ctx) {
        Ok(parsed) => parsed,
        Err(err) => return pass(parse_reason(err)),
    };
    // SAFETY: bounds checked by parse().
    let (src, dst) = unsafe { ((*parsed.ip).src, (*parsed.ip).dst) };
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
                // Tagged frames are not checked: the route names the VLAN
                // device, the program sees its lower device.
                if !parsed.tagged
                    && !conntrack::reply_arrived_where_expected(entry, ingress_ifindex(ctx))
                {
                    return drop(reason::DROP_REPLY_WRONG_INTERFACE);
                }
                return to_client(ctx, &parsed, &key, entry, bytes);
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
    let ip = parsed.ip;
    let l4 = &parsed.l4;
    // SAFETY: bounds checked by parse().
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
    let partial = partial_checksum(ctx, ip, l4, bytes);
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
    send(ctx, parsed, hop, forwarded)
}

/// Backend → client on a tracked flow: put the VIP back as the source.
#[inline(always)]
fn to_client(
    ctx: &XdpContext,
    parsed: &Parsed,
    key: &FlowKey,
    entry: *mut Flow,
    bytes: u64,
) -> Outcome {
    let ip = parsed.ip;
    let l4 = &parsed.l4;
    // SAFETY: bounds checked by parse(); `entry` is a live LRU value.
    let (ttl, tos, tot_len) = unsafe { ((*ip).ttl, (*ip).tos, (*ip).tot_len) };
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
        proto: l4.proto,
        tos,
        tot_len: u16::from_be(tot_len),
        src: vip,
        dst: key.dst[0],
        src_port: vip_port,
        dst_port: l4.dst_port,
    };
    let hop = next_hop(ctx, Some(entry), &lookup);
    let via_stack = match via_stack(&hop) {
        Ok(via_stack) => via_stack,
        Err(outcome) => return outcome,
    };
    let partial = partial_checksum(ctx, ip, l4, bytes);
    nat::rewrite(ip, l4, End::Source, vip, vip_port);
    if partial {
        complete::complete(ctx, ip, l4);
    }
    counters::traffic(service_id, backend_id, Towards::Client, bytes);
    if via_stack {
        return pass(reason::PASS_NO_NEIGHBOUR);
    }
    send(ctx, parsed, hop, reason::FWD_REPLY)
}

/// The next hop from the flow's cache when fresh, else from the route
/// lookup (then cached in the flow, if there is one).
#[inline(always)]
fn next_hop(ctx: &XdpContext, flow: Option<*mut Flow>, lookup: &Lookup) -> NextHop {
    let ingress = lookup.ingress_ifindex;
    if let Some(entry) = flow
        && let Some(hop) = conntrack::cached_hop(entry, ingress, conntrack::now())
    {
        return hop;
    }
    let hop = fib::next_hop(ctx, lookup);
    if let Some(entry) = flow {
        conntrack::store_hop(entry, &hop, ingress);
    }
    hop
}

/// Whether the rewritten packet goes through the stack (unresolved
/// neighbour); `Err` with the outcome when it is not forwarded at all.
#[inline(always)]
fn via_stack(hop: &NextHop) -> Result<bool, Outcome> {
    match *hop {
        NextHop::Drop(reason) => Err(drop(reason)),
        NextHop::PassUntouched(reason) => Err(pass(reason)),
        NextHop::ResolveInStack { .. } => Ok(true),
        NextHop::Forward { .. } => Ok(false),
    }
}

/// Finishes a forwarded packet: router TTL, next-hop MACs, then XDP_TX when
/// it leaves where it came in, a redirect otherwise.
#[inline(always)]
fn send(ctx: &XdpContext, parsed: &Parsed, hop: NextHop, reason: u32) -> Outcome {
    let NextHop::Forward {
        ifindex,
        src_mac,
        dst_mac,
    } = hop
    else {
        return pass(reason);
    };
    if ifindex != ingress_ifindex(ctx) && egress_via_stack(ifindex) {
        // The kernel drops frames redirected there: let the stack forward
        // the rewritten packet (it decrements the TTL and sets the MACs).
        return pass(reason::PASS_VIA_STACK);
    }
    nat::decrement_ttl(parsed.ip);
    if parsed.tagged {
        // The route names an untagged device (a VLAN device cannot take
        // XDP frames and goes through the stack): the tag comes off.
        if !nat::strip_tag(ctx, src_mac, dst_mac) {
            // Cannot happen for a tag we parsed; the stack can forward the
            // rewritten, still tagged packet.
            return pass(reason::PASS_VIA_STACK);
        }
    } else {
        nat::set_macs(parsed.eth, src_mac, dst_mac);
    }
    if ifindex == ingress_ifindex(ctx) {
        return Outcome {
            action: XDP_TX,
            reason,
        };
    }
    // SAFETY: plain helper call; returns XDP_REDIRECT, or XDP_ABORTED for bad flags.
    let action = unsafe { bpf_redirect(ifindex, 0) } as u32;
    Outcome { action, reason }
}

/// Whether the packet's L4 checksum is partial (see `complete`); counted.
#[inline(always)]
fn partial_checksum(ctx: &XdpContext, ip: *mut parse::Ipv4Hdr, l4: &parse::L4, bytes: u64) -> bool {
    let partial = nat::looks_partial(ip, l4) && complete::really_partial(ctx, ip, l4);
    if partial {
        counters::reason(reason::EVENT_PARTIAL_CHECKSUM, bytes);
    }
    partial
}

/// Whether the agent marked `ifindex` as dropping redirected frames.
#[inline(always)]
fn egress_via_stack(ifindex: u32) -> bool {
    EGRESS
        .get(ifindex % EGRESS_SLOTS)
        .is_some_and(|e| e.ifindex == ifindex && e.flags & EGRESS_F_VIA_STACK != 0)
}

#[inline(always)]
fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    ctx.ingress_ifindex() as u32
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // An unbounded loop fails verification, so any reachable panic is caught
    // at load time rather than at run time.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
