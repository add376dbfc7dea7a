//! Reference programs: the least work a stateful NAT forwarder can do for an
//! established packet (bounced, or redirected out of another interface in
//! the packet-rate lab), and for a packet it does not serve. Our data path's
//! cases are compared with them in the same run, so the ratio says what our
//! extra work costs, whatever the host's speed.
//!
//! Both parse Ethernet, IPv4 (no options) and TCP with the bounds checks the
//! verifier demands, then do exactly one hash lookup on the 5-tuple (NAT) or
//! the destination (pass). The NAT reference also does what any router
//! does, as ours does: the TTL goes down by one. So its output is the very
//! bytes ours produces, which the benchmark checks.

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_PASS, XDP_TX},
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, HashMap},
    programs::XdpContext,
};
use failover_common::csum;

const ETHERTYPE_IPV4_BE: u16 = 0x0800u16.to_be();
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// An established flow, as the client sends it (network-order fields).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FlowTuple {
    pub src: u32,
    pub dst: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u32,
}

/// Where the flow goes: backend address and port, and the MACs to write.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Nat {
    pub addr: u32,
    pub port: u16,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// A service's destination (network-order fields).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Destination {
    pub addr: u32,
    pub port: u16,
    pub proto: u16,
}

/// Flows of `bench_reference_nat`. Written by the benchmark.
#[map(name = "BENCH_REF_FLOWS")]
static FLOWS: HashMap<FlowTuple, Nat> = HashMap::with_max_entries(1024, 0);

/// Services of `bench_reference_pass`. Written by the benchmark.
#[map(name = "BENCH_REF_SERVICES")]
static SERVICES: HashMap<Destination, u32> = HashMap::with_max_entries(1024, 0);

/// The Ethernet, IPv4 and TCP headers of an untagged frame without IP
/// options.
#[repr(C, packed)]
struct Headers {
    nat: NatHeaders,
    seq: u32,
    ack: u32,
    off_flags: u16,
    window: u16,
    tcp_check: u16,
    urgent: u16,
}

/// The frame's headers as `T` (Ethernet, IPv4 without options, then the
/// transport header), if it is such a frame of `proto`.
#[inline(always)]
fn headers<T>(ctx: &XdpContext, proto: u8) -> Option<*mut T> {
    let start = ctx.data();
    if start + size_of::<T>() > ctx.data_end() {
        return None;
    }
    let nat = start as *const NatHeaders;
    // SAFETY: bounds checked above (every `T` starts with `NatHeaders`);
    // unaligned reads of packed fields.
    let (ethertype, version_ihl, found) = unsafe {
        (
            (&raw const (*nat).ethertype).read_unaligned(),
            (*nat).version_ihl,
            (*nat).proto,
        )
    };
    (ethertype == ETHERTYPE_IPV4_BE && version_ihl == 0x45 && found == proto)
        .then_some(start as *mut T)
}

/// Minimal NAT: one lookup, destination address and port rewritten with
/// both checksums updated, MACs written, bounced.
#[xdp]
pub fn bench_reference_nat(ctx: XdpContext) -> u32 {
    let Some(h) = headers::<Headers>(&ctx, PROTO_TCP) else {
        return XDP_PASS;
    };
    // SAFETY: `h` covers the bounds-checked headers, the TCP checksum
    // included.
    let found = unsafe { rewrite(&raw mut (*h).nat, PROTO_TCP, &raw mut (*h).tcp_check, false) };
    if !found {
        return XDP_PASS;
    }
    XDP_TX
}

/// The headers both NAT references rewrite: Ethernet, IPv4 without
/// options, the ports (packed: the addresses sit at offsets not
/// 4-aligned).
#[repr(C, packed)]
struct NatHeaders {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    ethertype: u16,
    version_ihl: u8,
    tos: u8,
    tot_len: u16,
    id: u16,
    frag_off: u16,
    ttl: u8,
    proto: u8,
    ip_check: u16,
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
}

/// The least a stateful NAT does for an established packet of `proto`:
/// one lookup, then the destination address and port, the TTL down by
/// one, the IPv4 checksum and the L4 one at `l4_check` (left alone when
/// `zero_is_none` and it is 0: UDP without a checksum), the MACs. Whether
/// the flow was found (nothing is changed otherwise).
///
/// # Safety
/// `h` and `l4_check` point into the frame, bounds checked by the caller.
#[inline(always)]
unsafe fn rewrite(h: *mut NatHeaders, proto: u8, l4_check: *mut u16, zero_is_none: bool) -> bool {
    // SAFETY: as the caller promised; unaligned accesses of packed fields;
    // the map value is live.
    unsafe {
        let key = FlowTuple {
            src: (&raw const (*h).src).read_unaligned(),
            dst: (&raw const (*h).dst).read_unaligned(),
            src_port: (&raw const (*h).src_port).read_unaligned(),
            dst_port: (&raw const (*h).dst_port).read_unaligned(),
            proto: u32::from(proto),
        };
        let Some(nat) = FLOWS.get(&key) else {
            return false;
        };
        let ip_check = (&raw const (*h).ip_check).read_unaligned();
        // TTL and protocol share a 16-bit word of the IPv4 checksum.
        let ttl_proto = (&raw const (*h).ttl).cast::<u16>();
        let old_word = ttl_proto.read_unaligned();
        (*h).ttl = (*h).ttl.wrapping_sub(1);
        let new_word = ttl_proto.read_unaligned();
        (&raw mut (*h).dst).write_unaligned(nat.addr);
        (&raw mut (*h).dst_port).write_unaligned(nat.port);
        (&raw mut (*h).ip_check).write_unaligned(csum::update16(
            csum::update32(ip_check, key.dst, nat.addr),
            old_word,
            new_word,
        ));
        let check = l4_check.read_unaligned();
        if !(zero_is_none && check == 0) {
            l4_check.write_unaligned(csum::update16(
                csum::update32(check, key.dst, nat.addr),
                key.dst_port,
                nat.port,
            ));
        }
        (&raw mut (*h).eth_dst).write_unaligned(nat.dst_mac);
        (&raw mut (*h).eth_src).write_unaligned(nat.src_mac);
    }
    true
}

/// Minimal pass: one lookup of the destination; a frame for no service
/// goes to the stack.
#[xdp]
pub fn bench_reference_pass(ctx: XdpContext) -> u32 {
    let Some(h) = headers::<Headers>(&ctx, PROTO_TCP) else {
        return XDP_PASS;
    };
    // SAFETY: `h` covers the bounds-checked headers.
    let key = unsafe {
        Destination {
            addr: (&raw const (*h).nat.dst).read_unaligned(),
            port: (&raw const (*h).nat.dst_port).read_unaligned(),
            proto: u16::from(PROTO_TCP),
        }
    };
    // SAFETY: a lookup; the value is only tested for presence.
    match unsafe { SERVICES.get(&key) } {
        Some(_) => XDP_TX,
        None => XDP_PASS,
    }
}

/// Index 0: the interface `bench_reference_redirect` sends out of. Written
/// by the benchmark.
#[map(name = "BENCH_REF_EGRESS")]
static EGRESS: Array<u32> = Array::with_max_entries(1, 0);

/// The Ethernet, IPv4 and UDP headers of an untagged frame without IP
/// options.
#[repr(C, packed)]
struct UdpHeaders {
    nat: NatHeaders,
    len: u16,
    check: u16,
}

/// Minimal NAT for the packet-rate lab's UDP flows: one lookup,
/// destination address and port rewritten, TTL down by one, the IPv4
/// checksum updated (the UDP checksum too, unless the sender left none),
/// MACs written, redirected out of `BENCH_REF_EGRESS`. The same bytes our
/// data path sends, with the least work that can produce them.
#[xdp]
pub fn bench_reference_redirect(ctx: XdpContext) -> u32 {
    let Some(h) = headers::<UdpHeaders>(&ctx, PROTO_UDP) else {
        return XDP_PASS;
    };
    let Some(&egress) = EGRESS.get(0) else {
        return XDP_ABORTED;
    };
    // SAFETY: `h` covers the bounds-checked headers, the UDP checksum
    // included.
    unsafe {
        if !rewrite(&raw mut (*h).nat, PROTO_UDP, &raw mut (*h).check, true) {
            return XDP_PASS;
        }
        bpf_redirect(egress, 0) as u32
    }
}
