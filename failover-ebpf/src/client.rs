//! Client → VIP: follow the flow's entry or pick a backend, record the flow
//! when the packet can start one, rewrite the destination, forward.

use aya_ebpf::{bindings::xdp_action::XDP_TX, programs::XdpContext};
use failover_common::{
    Flow, FlowKey, PROTO_TCP, ReverseKey, SERVICE_F_REDISPATCH, SERVICE_F_RESET_DEAD_FLOWS,
    Service, ServiceKey,
    hash::{FLOW_HASH_SEED, flow_hash},
    stats::reason,
};

use crate::{
    complete,
    conntrack::{self, NewFlow, Target},
    counters::{self, Towards},
    egress::{ingress_ifindex, next_hop, send, via_stack},
    evidence,
    family::Family,
    fib::{Lookup, NextHop},
    maps::{BACKEND_HOPS, FLOWS, PROGRAMS, REVERSE, SERVICES},
    nat::End,
    outcome::{Outcome, drop, pass},
    parse::{L4, Parsed, TCP_FLAG_ACK, TCP_FLAG_RST, TCP_FLAG_SYN, tcp_seq_ack},
    syns::{self, NO_BACKEND, RepeatedSyn},
};

/// A packet to a VIP address; `None` when no service has its port and
/// protocol (and no tracked flow does).
#[inline(always)]
pub fn from_client<F: Family>(ctx: &XdpContext, parsed: &Parsed<F>, bytes: u64) -> Option<Outcome> {
    let (src, dst) = (F::src(parsed.l3.ip), F::dst(parsed.l3.ip));
    let l4 = &parsed.l4;
    let key = FlowKey::new(
        F::FAMILY,
        F::key(src),
        F::key(dst),
        l4.src_port,
        l4.dst_port,
        l4.proto,
    );
    let now = conntrack::now();
    let fresh_syn =
        l4.proto == PROTO_TCP && l4.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN;
    // Tracked flows first: one lookup for every packet of a recorded flow.
    // A SYN skips it and is picked by the table (as Katran does): it
    // records nothing, and looking up a tuple nobody recorded would cost a
    // cache miss per SYN, which is what a flood sends.
    let mut repick = false;
    if !fresh_syn && let Some(entry) = FLOWS.get_ptr_mut(key) {
        if conntrack::expired(entry, now) {
            counters::reason(reason::EVENT_FLOW_EXPIRED, bytes);
        } else {
            let established = conntrack::established::<F>(entry);
            // The first ACK of a new connection on the tuple of a closed
            // flow (a reused port), a dead one, or a copy learned from
            // another edge host that never had a packet here (its flow
            // ended there) follows its SYN, as a new flow, and records the
            // flow again.
            let new_connection = (established.is_none()
                || conntrack::closing(entry)
                || conntrack::never_seen(entry))
                && first_ack_of_new_connection(&key, l4, now);
            match established {
                _ if new_connection => {}
                Some((backend_id, backend)) => {
                    conntrack::touch(entry, l4.proto, l4.tcp_flags, now, bytes);
                    let route = Route::Tracked {
                        entry,
                        backend_id,
                        backend,
                    };
                    return Some(to_backend(ctx, parsed, &key, route, now, bytes));
                }
                None => repick = true,
            }
        }
    }
    let service_key = ServiceKey {
        addr: F::key(dst),
        port_be: l4.dst_port,
        proto: l4.proto,
        family: F::FAMILY,
    };
    let Some(service) = SERVICES.get_ptr(service_key) else {
        if repick {
            // A flow of a removed service: forget it.
            let _ = FLOWS.remove(key);
        }
        return None;
    };
    // SAFETY: the agent replaces values whole (RCU); we only read.
    let service = unsafe { &*service };
    if repick {
        if service.flags & SERVICE_F_RESET_DEAD_FLOWS != 0
            && l4.proto == PROTO_TCP
            && l4.tcp_flags & TCP_FLAG_RST == 0
            && F::reset(ctx, parsed)
        {
            let _ = FLOWS.remove(key);
            return Some(Outcome {
                action: XDP_TX,
                reason: reason::TX_RESET,
            });
        }
        counters::reason(reason::EVENT_REPICK, bytes);
    }
    // A repeated SYN redispatch acts on goes to its own program (which
    // returns here only if the agent has not filled its slot).
    if fresh_syn
        && service.flags & SERVICE_F_REDISPATCH != 0
        && syns::repeated_syn(flow_hash(&key, FLOW_HASH_SEED), tcp_seq_ack(l4).0, now).any()
    {
        // SAFETY: a tail call; on failure the table decides, as without
        // redispatch.
        let _ = unsafe { PROGRAMS.tail_call(ctx, F::REDISPATCH) };
    }
    let repeated = RepeatedSyn::NONE;
    Some(to_backend(
        ctx,
        parsed,
        &key,
        Route::New { service, repeated },
        now,
        bytes,
    ))
}

/// A SYN redispatch acts on (`redispatch`), in the program of its own:
/// its backend never answered it, so it goes to another; or it went to
/// another already, and goes there again.
#[inline(always)]
pub fn repeated_syn<F: Family>(
    ctx: &XdpContext,
    parsed: &Parsed<F>,
    bytes: u64,
) -> Option<Outcome> {
    let (src, dst) = (F::src(parsed.l3.ip), F::dst(parsed.l3.ip));
    let l4 = &parsed.l4;
    if l4.proto != PROTO_TCP || l4.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) != TCP_FLAG_SYN {
        return None;
    }
    // The keys as `from_client` builds them: a helper both share moves the
    // IPv6 program's verification past its limit (live ranges change).
    let key = FlowKey::new(
        F::FAMILY,
        F::key(src),
        F::key(dst),
        l4.src_port,
        l4.dst_port,
        l4.proto,
    );
    let service_key = ServiceKey {
        addr: F::key(dst),
        port_be: l4.dst_port,
        proto: l4.proto,
        family: F::FAMILY,
    };
    // SAFETY: the agent replaces values whole (RCU); we only read.
    let service = unsafe { &*SERVICES.get_ptr(service_key)? };
    let now = conntrack::now();
    let repeated = syns::repeated_syn(flow_hash(&key, FLOW_HASH_SEED), tcp_seq_ack(l4).0, now);
    Some(to_backend(
        ctx,
        parsed,
        &key,
        Route::New { service, repeated },
        now,
        bytes,
    ))
}

/// Whether the packet is a first ACK whose SYN is remembered: a new
/// connection, whatever an entry of its tuple says.
#[inline(always)]
fn first_ack_of_new_connection(key: &FlowKey, l4: &L4, now: u64) -> bool {
    l4.proto == PROTO_TCP
        && conntrack::starts_flow(l4.proto, l4.tcp_flags)
        && syns::new_connection_syn(flow_hash(key, FLOW_HASH_SEED), now)
}

/// How a client → VIP packet found its backend.
enum Route<'a, F: Family> {
    /// A tracked flow whose backend may keep it.
    Tracked {
        entry: *mut Flow,
        backend_id: u32,
        backend: Target<F>,
    },
    /// No usable entry: the table decides, unless the packet is a repeated
    /// SYN redispatch acts on.
    New {
        service: &'a Service,
        repeated: RepeatedSyn,
    },
}

/// Rewrites the destination to the backend and forwards.
#[inline(always)]
fn to_backend<F: Family>(
    ctx: &XdpContext,
    parsed: &Parsed<F>,
    key: &FlowKey,
    route: Route<F>,
    now: u64,
    bytes: u64,
) -> Outcome {
    let ip = parsed.l3.ip;
    let l4 = &parsed.l4;
    if F::hop_limit(ip) <= 1 {
        return pass(reason::PASS_TTL_EXPIRED);
    }
    let ingress = ingress_ifindex(ctx);
    let mut hash = 0;
    let mut followed_syn = false;
    let (backend_id, backend, service_id, tracked) = match route {
        // SAFETY: a live LRU value.
        Route::Tracked {
            entry,
            backend_id,
            backend,
        } => (
            backend_id,
            backend,
            unsafe { (*entry).service_id },
            Some(entry),
        ),
        Route::New { service, repeated } => {
            hash = flow_hash(key, FLOW_HASH_SEED);
            // A first ACK goes where its SYN went, if that is remembered.
            let handshake =
                if l4.proto == PROTO_TCP && conntrack::starts_flow(l4.proto, l4.tcp_flags) {
                    syns::syn_backend(hash, now)
                } else {
                    None
                };
            // Another backend for a repeated SYN redispatch acts on.
            let other = if repeated.refused != NO_BACKEND {
                let other = conntrack::pick_other(hash, service, repeated.refused);
                if other.is_some() {
                    counters::reason(reason::EVENT_SYN_REDISPATCHED, bytes);
                }
                other
            } else if repeated.redispatched_to != NO_BACKEND {
                conntrack::for_new_flow(repeated.redispatched_to)
            } else {
                None
            };
            let (backend_id, backend) = match (handshake, other) {
                (Some(found), _) => {
                    counters::reason(reason::EVENT_SYN_FOLLOWED, bytes);
                    followed_syn = true;
                    found
                }
                (None, Some(other)) => other,
                (None, None) => match conntrack::pick(hash, service, bytes) {
                    Some(picked) => picked,
                    None => return drop(reason::DROP_NO_BACKEND),
                },
            };
            if l4.proto == PROTO_TCP && l4.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK) == TCP_FLAG_SYN
            {
                // Remembered here, where the pick is made (the rest of the
                // path needs no more of it): once redispatch had its say, it
                // never acts on this SYN again (with no other backend, the
                // refusal reaches the client).
                let (seq, _) = tcp_seq_ack(l4);
                let redispatched = repeated.any();
                syns::remember_syn(hash, backend_id, backend.generation, seq, now, redispatched);
                evidence::syn_sent(backend_id);
            }
            (backend_id, Target::<F>::of(&backend), service.id, None)
        }
    };

    let backend_addr = backend.addr;
    let backend_port = if backend.port_be != 0 {
        backend.port_be
    } else {
        l4.dst_port
    };
    let lookup = Lookup::<F> {
        ingress_ifindex: ingress,
        proto: l4.proto,
        tos: F::tos(ip),
        tot_len: F::packet_len(ip),
        src: F::src(ip),
        dst: backend_addr,
        src_port: l4.src_port,
        dst_port: backend_port,
    };
    // A tracked flow's own cached hop; a new flow's, the backend's (every
    // new flow to a backend goes the same way: no route lookup per SYN).
    let cache = match tracked {
        // SAFETY: a field of a live LRU value.
        Some(entry) => Some(unsafe { &raw mut (*entry).to_backend }),
        None => BACKEND_HOPS.get_ptr_mut(backend_id),
    };
    let (hop, looked_up) = next_hop(ctx, cache, &lookup, now);
    if let NextHop::TooBig { mtu } = hop
        && !F::may_fragment(ip)
    {
        return F::too_big(ctx, &parsed.l3, mtu);
    }
    let via_stack = match via_stack(&hop) {
        Ok(via_stack) => via_stack,
        Err(outcome) => return outcome,
    };

    if tracked.is_none() {
        if looked_up {
            // Where the backend's replies must arrive (at most once a
            // second per backend, as its hop is looked up again).
            learn_reply_interface::<F>(backend_addr, backend_port, l4.proto, &hop);
        }
        if conntrack::starts_flow(l4.proto, l4.tcp_flags) {
            let recorded = conntrack::record(
                &NewFlow {
                    key,
                    service_id,
                    backend_id,
                    backend_generation: backend.generation,
                    hop: &hop,
                    ingress_ifindex: ingress,
                    tot_len: lookup.tot_len,
                },
                now,
                bytes,
            );
            if recorded && followed_syn {
                // A SYN remembered unrecorded for this tuple from now on
                // is a new connection's (see from_client).
                syns::syn_recorded(hash);
            }
        } else if l4.tcp_flags & TCP_FLAG_SYN == 0 {
            counters::reason(reason::EVENT_MIDFLOW_PICK, bytes);
        }
    }
    complete::rewrite(
        ctx,
        &parsed.l3,
        l4,
        End::Destination,
        (backend_addr, backend_port),
        bytes,
    );
    counters::traffic(service_id, backend_id, Towards::Backend, bytes);
    if let Some(reason) = via_stack {
        return pass(reason);
    }
    let forwarded = if tracked.is_some() {
        reason::FWD_ESTABLISHED
    } else {
        reason::FWD_NEW_FLOW
    };
    send(ctx, &parsed.l3, hop, forwarded, ingress)
}

/// Notes in the backend's reverse entry the interface its packets leave by,
/// which its replies must arrive on (written only when it changes).
#[inline(always)]
fn learn_reply_interface<F: Family>(addr: F::Addr, port_be: u16, proto: u8, hop: &NextHop) {
    let egress = hop.egress_ifindex();
    if egress == 0 {
        return;
    }
    let key = ReverseKey::new(F::FAMILY, F::key(addr), port_be, proto);
    if let Some(reverse) = REVERSE.get_ptr_mut(key) {
        // SAFETY: a live map value; a 4-byte store, racing writers store
        // the same interface.
        unsafe {
            if (*reverse).reply_ifindex != egress {
                (*reverse).reply_ifindex = egress;
            }
        }
    }
}
