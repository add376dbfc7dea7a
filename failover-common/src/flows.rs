//! The flow table and what it relies on: one entry per flow (`FO_FLOWS`),
//! the reverse NAT of backend endpoints (`FO_REVERSE`), the address filter
//! (`FO_ADDRESSES`), lifetimes and the flood guard (`FO_SETTINGS`,
//! `FO_FLOOD`). The same layout rules as `maps`: `#[repr(C)]`, explicit
//! padding, size assertions.

use core::mem::size_of;

use crate::maps::AddrBe;

/// Flow-table entries unless the configuration says otherwise (one per
/// flow; `[conntrack] max_flows`, set when the program is loaded).
pub const DEFAULT_MAX_FLOWS: u32 = 262_144;
/// Kernel memory one flow-table entry takes (key, value and the LRU hash's
/// own element; the kernel's memlock accounting on 6.18, for sizing).
pub const FLOW_ENTRY_BYTES: u64 = 168;
/// Bounds of `max_flows`.
pub const MIN_MAX_FLOWS: u32 = 1_024;
pub const MAX_MAX_FLOWS: u32 = 16_777_216;

/// [`Flow::state`]: where a flow is in its life (its lifetime follows).
pub mod flow_state {
    /// TCP after the client's first ACK, or UDP.
    pub const OPEN: u8 = 1;
    /// TCP after a FIN or RST from either side: a short lifetime.
    pub const CLOSING: u8 = 2;
}

/// A next hop cached in a flow for one direction, refreshed at most once
/// per [`LAST_SEEN_GRANULARITY_NS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CachedHop {
    /// `bpf_ktime_get_coarse_ns` when it was looked up.
    pub stamp_ns: u64,
    /// Egress interface; 0 when none is cached.
    pub ifindex: u32,
    /// Valid for packets arriving on this interface only.
    pub ingress_ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The longest IPv4 total length the route lookup let through: a longer
    /// packet is looked up again (its next hop's MTU may be smaller).
    pub fits_len: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<CachedHop>() == 32);

/// Value of `FO_FLOWS` (key: the flow as the client sends it, client →
/// VIP), written by the XDP program; one cache line. A backend's FIN or
/// RST finds it by that key too, after `FO_REVERSE` gave the VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flow {
    pub backend_id: u32,
    pub service_id: u32,
    /// [`Backend::generation`] of `backend_id` when the flow was recorded:
    /// the entry is stale once the slot has another owner.
    pub backend_generation: u32,
    /// One of [`flow_state`].
    pub state: u8,
    pub _pad: [u8; 3],
    /// `bpf_ktime_get_coarse_ns` of the client's last packet, refreshed at
    /// most once per [`LAST_SEEN_GRANULARITY_NS`].
    pub last_seen_ns: u64,
    /// The entry counts as absent after this (same clock): last seen plus
    /// the lifetime of its protocol and state (`FO_SETTINGS`).
    pub expires_ns: u64,
    /// Towards the backend (the client's packets; replies take theirs from
    /// `FO_CLIENT_HOPS`).
    pub to_backend: CachedHop,
}
const _: () = assert!(size_of::<Flow>() == 64);

/// Key of `FO_REVERSE`: a backend's endpoint as its replies carry it
/// (address, the port it serves the service on, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ReverseKey {
    pub addr: AddrBe,
    /// Network order.
    pub port_be: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(size_of::<ReverseKey>() == 20);

impl ReverseKey {
    /// An endpoint of `family` (the address as [`crate::ipv4_addr`] or
    /// [`crate::ipv6_addr`] makes it, the port in network order).
    pub const fn new(family: u8, addr: AddrBe, port_be: u16, proto: u8) -> Self {
        Self {
            addr,
            port_be,
            proto,
            family,
        }
    }

    /// An IPv4 endpoint.
    pub const fn ipv4(addr: AddrBe, port_be: u16, proto: u8) -> Self {
        Self::new(crate::maps::FAMILY_IPV4, addr, port_be, proto)
    }
}

/// Value of `FO_REVERSE`, written by the agent with the backend: what a reply
/// from the endpoint is rewritten to come from. One endpoint serves one
/// service (the configuration refuses two), so a reply needs no per-flow
/// state to find its VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReverseNat {
    pub vip: AddrBe,
    /// Network order.
    pub vip_port_be: u16,
    pub _pad: u16,
    pub service_id: u32,
    pub backend_id: u32,
    /// The interface the backend is reached by, learned by the program from
    /// its new flows (0: not yet, any): a packet with the endpoint's address
    /// arriving elsewhere is not rewritten to come from the VIP.
    pub reply_ifindex: u32,
    pub _pad2: [u32; 2],
}
const _: () = assert!(size_of::<ReverseNat>() == 40);

/// Slots of `FO_ADDRESSES`, a filter over every VIP and backend address: a
/// packet whose destination is no VIP and whose source is no backend (most
/// of an edge host's traffic) passes after one array read, no hash lookup.
pub const ADDRESS_SLOTS: u32 = 16_384;
/// [`ADDRESS_SLOTS`] bits flags: some VIP hashes here.
pub const ADDRESS_F_VIP: u32 = 1;
/// Some backend hashes here.
pub const ADDRESS_F_BACKEND: u32 = 2;

/// The slot of an address (words in network order) in a table of `slots`
/// (a power of two): the address folded to 32 bits, then Fibonacci hashing
/// (the top bits of the product spread any input).
const fn address_hash_slot(addr: &AddrBe, slots: u32) -> u32 {
    let folded =
        addr[0] ^ addr[1].rotate_left(8) ^ addr[2].rotate_left(16) ^ addr[3].rotate_left(24);
    folded.wrapping_mul(0x9E37_79B1) >> (32 - slots.trailing_zeros())
}

/// The `FO_ADDRESSES` slot of an address. Shared by the program and the
/// agent that writes the filter.
pub const fn address_slot(addr: &AddrBe) -> u32 {
    address_hash_slot(addr, ADDRESS_SLOTS)
}

/// Value of `FO_SETTINGS` (an array of one), written by the agent at start
/// and on reload. Zero fields mean the built-in defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Lifetime of an open TCP flow without packets.
    pub tcp_open_ns: u64,
    /// Lifetime of a TCP flow after a FIN or RST.
    pub tcp_closing_ns: u64,
    /// Lifetime of a UDP flow without packets.
    pub udp_ns: u64,
    /// New flows one CPU records per second before the flood guard stops
    /// recording (the table then decides each packet); 0: the default.
    pub max_new_flows_per_cpu: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Settings>() == 32);

/// Built-in lifetimes and threshold (IPVS's and Cilium's order of magnitude).
pub const DEFAULT_TCP_OPEN_NS: u64 = 3_600 * 1_000_000_000;
pub const DEFAULT_TCP_CLOSING_NS: u64 = 10 * 1_000_000_000;
pub const DEFAULT_UDP_NS: u64 = 60 * 1_000_000_000;
pub const DEFAULT_MAX_NEW_FLOWS_PER_CPU: u32 = 200_000;

/// Value of the (per-CPU, unpinned) `FO_CLIENT_HOPS`, indexed by a hash of
/// the client's address: the next hop towards that client, for replies.
/// The route to a client depends on its address only, so every flow of a
/// client shares it; per CPU, so a slot is never written by two at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClientHop {
    /// The client the hop is for (a slot holds one of many), and its
    /// family (an IPv4 address and an IPv6 one can hold the same words).
    pub addr: AddrBe,
    pub family: u8,
    pub _pad: [u8; 7],
    pub hop: CachedHop,
}
const _: () = assert!(size_of::<ClientHop>() == 56);

/// Slots of `FO_CLIENT_HOPS` per CPU (a power of two: 896 KiB a CPU).
pub const CLIENT_HOP_SLOTS: u32 = 1 << 14;

/// The `FO_CLIENT_HOPS` slot of a client address.
pub const fn client_hop_slot(addr: &AddrBe) -> u32 {
    address_hash_slot(addr, CLIENT_HOP_SLOTS)
}

/// Value of the (unpinned) `FO_SYNS`, an array indexed by the low bits of
/// the flow hash: the backend a SYN was sent to, for the client's first ACK
/// to follow even if the table changed in between. A slot is overwritten
/// by the next SYN that hashes there: a write costs no more than a store,
/// and a SYN flood overwrites slots, never the flow table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SynSeen {
    /// The whole flow hash, checked by the ACK (the slot holds one of many).
    pub flow_hash: u32,
    pub backend_generation: u32,
    /// The SYN's sequence number (host order): a RST answering it
    /// acknowledges this plus one.
    pub seq: u32,
    /// Below [`MAX_BACKENDS`](crate::MAX_BACKENDS).
    pub backend_id: u16,
    /// Bits 0–11: `bpf_ktime_get_coarse_ns` >> 30 (about seconds) when the
    /// SYN passed, wrapping (every 73 minutes). [`SynSeen::RECORDED`]: a
    /// first ACK recorded the flow: the SYN still guides an evicted flow's
    /// next packet, but no longer starts a new connection on an entry of
    /// its tuple. [`SynSeen::ANSWERED`]: the backend answered the
    /// handshake with a SYN-ACK (kept across the client's repeated SYNs of
    /// the tuple): a later RST is no evidence of a dead service.
    /// [`SynSeen::REDISPATCHED`]: the SYN was already sent to another
    /// backend once (or redispatch found none); it is not redispatched
    /// again. [`SynSeen::REFUSED`]: a RST answering it was rebuilt into
    /// it; a later RST is not. (Sixteen
    /// bytes a slot keep the array in a core's cache.)
    pub stamp: u16,
}
const _: () = assert!(size_of::<SynSeen>() == 16);
const _: () = assert!(crate::MAX_BACKENDS <= u16::MAX as u32);

impl SynSeen {
    /// [`SynSeen::stamp`]'s bit for a recorded flow.
    pub const RECORDED: u16 = 0x8000;
    /// [`SynSeen::stamp`]'s bit for a handshake the backend answered.
    pub const ANSWERED: u16 = 0x4000;
    /// [`SynSeen::stamp`]'s bit for a SYN redispatched once.
    pub const REDISPATCHED: u16 = 0x2000;
    /// [`SynSeen::stamp`]'s bit for a SYN rebuilt from its backend's RST.
    pub const REFUSED: u16 = 0x1000;
    /// [`SynSeen::stamp`]'s time bits.
    pub const TIME: u16 = 0x0fff;
}

/// Slots of `FO_SYNS` (a power of two: 512 KiB, small enough to stay in a
/// CPU's cache — each SYN writes a random slot; at 4 MiB that cost a SYN
/// ~50–100 ns more, measured), and how long, in its stamp's units of about
/// a second, a SYN is remembered (a handshake, with the client's SYN
/// retransmissions, is over well within it). Above a few thousand new
/// connections a second, a SYN's slot may be taken before its ACK: then
/// the table decides the ACK, which matters only if it changed in between.
pub const SYN_SLOTS: u32 = 1 << 15;
pub const SYN_LIFETIME_STAMPS: u16 = 10;

/// Value of the (per-CPU, unpinned) `FO_FLOOD`: this CPU's new flows in the
/// current one-second window.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FloodWindow {
    pub started_ns: u64,
    pub recorded: u32,
    /// The guard tripped in this window (counted once).
    pub tripped: u32,
}
const _: () = assert!(size_of::<FloodWindow>() == 16);

/// How stale `Flow::last_seen_ns` may get before a packet refreshes it.
pub const LAST_SEEN_GRANULARITY_NS: u64 = 1_000_000_000;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::ipv4_addr;

    #[test]
    fn address_slots_stay_in_range_and_spread() {
        let mut seen = std::collections::HashSet::new();
        for last in 0..=255u8 {
            let slot = address_slot(&ipv4_addr([198, 51, 100, last]));
            assert!(slot < ADDRESS_SLOTS);
            seen.insert(slot);
        }
        // 256 neighbouring addresses, few collisions.
        assert!(seen.len() > 240, "{}", seen.len());
    }
}
