//! Connection tracking: one entry per flow in `FO_FLOWS`, keyed as the
//! client sends it (client → VIP). It names the backend, the TCP state and
//! when the flow expires, and caches the next hop of each direction
//! (refreshed at most once per `LAST_SEEN_GRANULARITY_NS`), so a tracked
//! packet costs one hash lookup and no route lookup.
//!
//! Only a packet that can belong to a connection records one: UDP, or a TCP
//! ACK without SYN, FIN or RST (the client's first ACK completes its
//! handshake). A SYN neither reads nor leaves a flow entry, so a SYN flood
//! evicts no established flow and costs no table miss: the table picks it,
//! and the backend it was sent to is remembered briefly (`syns`, the SYN
//! memory) for the first ACK to follow. The record marks the memory
//! recorded, so a SYN remembered unrecorded for a tuple whose entry is
//! closing or dead is a new connection's (a reused port): its first ACK
//! follows it and records the flow again. A per-CPU flood guard
//! caps how many flows a CPU records per second. Replies find their VIP in
//! `FO_REVERSE` (no per-flow state); a backend's FIN or RST closes the
//! entry.

use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, macros::map, maps::PerCpuArray};
use failover_common::{
    Backend, CachedHop, DEFAULT_MAX_NEW_FLOWS_PER_CPU, DEFAULT_TCP_CLOSING_NS, DEFAULT_TCP_OPEN_NS,
    DEFAULT_UDP_NS, FloodWindow, Flow, FlowKey, LAST_SEEN_GRANULARITY_NS, MAX_SELECTION,
    MAX_SPARES, MaglevKey, PROTO_TCP, Service, flow_state,
    pick::{self, PickMaps},
    stats::reason,
    usable_for_established, usable_for_new,
};

use crate::{
    counters,
    family::Family,
    fib::NextHop,
    maps::{BACKENDS, FLOOD, FLOWS, MAGLEV, SETTINGS, SPARES},
    parse::{TCP_FLAG_ACK, TCP_FLAG_FIN, TCP_FLAG_RST, TCP_FLAG_SYN},
};

/// A flow entry being recorded, per CPU. Not pinned: nothing outlives an
/// insert.
#[map(name = "FO_NEW_FLOW")]
static NEW_FLOW: PerCpuArray<Flow> = PerCpuArray::with_max_entries(1, 0);

/// One second, the flood guard's window.
const FLOOD_WINDOW_NS: u64 = 1_000_000_000;

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    BACKENDS.get(id).copied()
}

/// What forwarding to a backend needs of it (read from its slot without
/// copying the whole value: this is the per-packet path).
pub struct Target<F: Family> {
    pub addr: F::Addr,
    /// Network order; 0 keeps the service's port.
    pub port_be: u16,
    pub generation: u32,
}

impl<F: Family> Clone for Target<F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Family> Copy for Target<F> {}

impl<F: Family> Target<F> {
    #[inline(always)]
    pub fn of(backend: &Backend) -> Self {
        Self {
            addr: F::from_key(&backend.addr),
            port_be: backend.port_be,
            generation: backend.generation,
        }
    }
}

/// The backend of a tracked flow, if its slot still has the owner the flow
/// was recorded with (same generation: an id freed by a reload and given
/// to another backend or service never inherits the old owner's flows)
/// and that owner may keep the flow.
#[inline(always)]
pub fn established<F: Family>(entry: *mut Flow) -> Option<(u32, Target<F>)> {
    // SAFETY: a live LRU value.
    let (backend_id, generation) = unsafe { ((*entry).backend_id, (*entry).backend_generation) };
    let backend = BACKENDS.get_ptr(backend_id)?;
    // SAFETY: a live array slot; the agent replaces it whole.
    unsafe {
        ((*backend).generation == generation && usable_for_established((*backend).state)).then(
            || {
                (
                    backend_id,
                    Target {
                        addr: F::from_key(&raw const (*backend).addr),
                        port_be: (*backend).port_be,
                        generation,
                    },
                )
            },
        )
    }
}

/// Whether the entry is past its lifetime: it then counts as absent (the
/// LRU has no TTL; the agent reclaims such entries in the background).
#[inline(always)]
pub fn expired(entry: *mut Flow, now: u64) -> bool {
    // SAFETY: a live LRU value.
    now > unsafe { (*entry).expires_ns }
}

/// Whether the flow saw a FIN or RST.
#[inline(always)]
pub fn closing(entry: *mut Flow) -> bool {
    // SAFETY: a live LRU value.
    unsafe { (*entry).state == flow_state::CLOSING }
}

/// Whether the entry never had a packet on this host: a copy another edge
/// host's agent sent (`[sync]`), written with `last_seen_ns` 0.
#[inline(always)]
pub fn never_seen(entry: *mut Flow) -> bool {
    // SAFETY: a live LRU value.
    unsafe { (*entry).last_seen_ns == 0 }
}

/// Lifetime without packets of a flow of `proto` in `state`.
#[inline(always)]
fn lifetime(proto: u8, state: u8) -> u64 {
    let settings = SETTINGS.get(0);
    let (configured, default) = if proto != PROTO_TCP {
        (settings.map_or(0, |s| s.udp_ns), DEFAULT_UDP_NS)
    } else if state == flow_state::CLOSING {
        (
            settings.map_or(0, |s| s.tcp_closing_ns),
            DEFAULT_TCP_CLOSING_NS,
        )
    } else {
        (settings.map_or(0, |s| s.tcp_open_ns), DEFAULT_TCP_OPEN_NS)
    };
    if configured == 0 { default } else { configured }
}

/// Notes a packet of the flow, either way: a FIN or RST starts closing (a
/// short lifetime); otherwise last-seen and the expiry move on at most once
/// per `LAST_SEEN_GRANULARITY_NS`.
#[inline(always)]
pub fn touch(entry: *mut Flow, proto: u8, tcp_flags: u8, now: u64, bytes: u64) {
    // SAFETY: a live LRU value; racing writers store equivalent values.
    unsafe {
        let closes = proto == PROTO_TCP && tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST) != 0;
        if closes && (*entry).state != flow_state::CLOSING {
            (*entry).state = flow_state::CLOSING;
            counters::reason(reason::EVENT_FLOW_CLOSING, bytes);
        } else if now.wrapping_sub((*entry).last_seen_ns) <= LAST_SEEN_GRANULARITY_NS {
            return;
        }
        (*entry).last_seen_ns = now;
        (*entry).expires_ns = now + lifetime(proto, (*entry).state);
    }
}

/// The cached next hop, if it is fresh, for this ingress interface and
/// known to fit a packet of `tot_len` bytes.
#[inline(always)]
pub fn cached_hop(
    hop: *mut CachedHop,
    ingress_ifindex: u32,
    tot_len: u16,
    now: u64,
) -> Option<NextHop> {
    // SAFETY: a field of a live LRU value.
    unsafe {
        let ifindex = (*hop).ifindex;
        if ifindex == 0
            || (*hop).ingress_ifindex != ingress_ifindex
            || tot_len > (*hop).fits_len
            || now.wrapping_sub((*hop).stamp_ns) > LAST_SEEN_GRANULARITY_NS
        {
            return None;
        }
        Some(NextHop::Forward {
            ifindex,
            src_mac: (*hop).src_mac,
            dst_mac: (*hop).dst_mac,
        })
    }
}

/// Caches a resolved next hop (only a forwarding one), known to fit
/// packets of `tot_len` bytes: a longer one than the cache knew to fit
/// raises the bound, a refreshed hop starts from it.
#[inline(always)]
pub fn store_hop(
    cache: *mut CachedHop,
    hop: &NextHop,
    ingress_ifindex: u32,
    tot_len: u16,
    now: u64,
) {
    if let NextHop::Forward {
        ifindex,
        src_mac,
        dst_mac,
    } = hop
    {
        // SAFETY: a field of a live LRU value (or of a value on the stack).
        unsafe {
            let same = (*cache).ifindex == *ifindex
                && now.wrapping_sub((*cache).stamp_ns) <= LAST_SEEN_GRANULARITY_NS;
            (*cache).fits_len = if same {
                tot_len.max((*cache).fits_len)
            } else {
                tot_len
            };
            (*cache).stamp_ns = now;
            (*cache).ifindex = *ifindex;
            (*cache).ingress_ifindex = ingress_ifindex;
            (*cache).src_mac = *src_mac;
            (*cache).dst_mac = *dst_mac;
        }
    }
}

/// The maps as the program reads them, for the shared pick.
struct ProgramMaps;

impl PickMaps for ProgramMaps {
    #[inline(always)]
    fn backend(&self, id: u32) -> Option<Backend> {
        backend(id)
    }

    #[inline(always)]
    fn table_slot(&self, key: &MaglevKey, index: usize) -> Option<u32> {
        // SAFETY: chunks are written whole by the agent before the service
        // value that selects their generation.
        unsafe { MAGLEV.get(key) }.map(|chunk| chunk[index])
    }
}

/// Picks a backend for a new flow of flow hash `hash`
/// (`failover_common::pick`, the same code `inspect explain` runs); a stale
/// entry met on the way is counted. `None`: no usable backend.
#[inline(always)]
pub fn pick(hash: u32, service: &Service, bytes: u64) -> Option<(u32, Backend)> {
    let (picked, stale) = pick::pick(&ProgramMaps, service, hash);
    if stale {
        counters::reason(reason::EVENT_STALE_SELECTION, bytes);
    }
    picked.map(|p| (p.backend_id, p.backend))
}

/// Backend `id`, if it may take a new flow.
#[inline(always)]
pub fn for_new_flow(id: u32) -> Option<(u32, Backend)> {
    backend(id)
        .filter(|b| usable_for_new(b.state))
        .map(|b| (id, b))
}

/// Selection entries [`pick_other`] tries (a bounded loop keeps the
/// verifier's work small; four unusable in a row is a service in trouble).
const OTHER_TRIES: u32 = 4;

/// Another backend than `refused` for a new flow of flow hash `hash`: one
/// of the next usable entries of the selection from the hash, else the
/// service's first usable spare (`FO_SPARES`).
#[inline(always)]
pub fn pick_other(hash: u32, service: &Service, refused: u32) -> Option<(u32, Backend)> {
    // One lookup per candidate: the backend found is the one returned.
    let usable = |id: u32| {
        backend(id)
            .filter(|b| id != refused && b.service_id == service.id && usable_for_new(b.state))
            .map(|b| (id, b))
    };
    let len = service.selection_len;
    if len != 0 && len <= MAX_SELECTION as u32 {
        let start = hash % len;
        let mut i = 0;
        while i < OTHER_TRIES && i < len {
            // As in `failover_common::pick`: the mask must survive LLVM.
            // SAFETY: reading a local.
            let entry = unsafe { core::ptr::read_volatile(&((start + i) % len)) };
            let id = service.selection[entry as usize & (MAX_SELECTION - 1)];
            if let Some(found) = usable(id) {
                return Some(found);
            }
            i += 1;
        }
    }
    let spares = SPARES.get(service.id)?;
    let mut i = 0;
    while i < MAX_SPARES && i < spares.len as usize {
        if let Some(found) = usable(spares.ids[i]) {
            return Some(found);
        }
        i += 1;
    }
    None
}

/// Whether a packet without an entry may record its flow: UDP, or a TCP ACK
/// without SYN, FIN or RST.
#[inline(always)]
pub fn starts_flow(proto: u8, tcp_flags: u8) -> bool {
    proto != PROTO_TCP
        || tcp_flags & (TCP_FLAG_ACK | TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST) == TCP_FLAG_ACK
}

/// Whether this CPU may record another flow in the current second; counts
/// the guard's refusals and the windows in which it tripped.
#[inline(always)]
fn flood_guard_allows(now: u64, bytes: u64) -> bool {
    let Some(window) = FLOOD.get_ptr_mut(0) else {
        return true;
    };
    let limit = SETTINGS.get(0).map_or(0, |s| s.max_new_flows_per_cpu);
    let limit = if limit == 0 {
        DEFAULT_MAX_NEW_FLOWS_PER_CPU
    } else {
        limit
    };
    // SAFETY: this CPU's slot.
    let window: &mut FloodWindow = unsafe { &mut *window };
    if now.wrapping_sub(window.started_ns) > FLOOD_WINDOW_NS {
        window.started_ns = now;
        window.recorded = 0;
        window.tripped = 0;
    }
    if window.recorded < limit {
        window.recorded += 1;
        return true;
    }
    if window.tripped == 0 {
        window.tripped = 1;
        counters::reason(reason::EVENT_FLOOD_GUARD_SECOND, 0);
    }
    counters::reason(reason::EVENT_FLOOD_GUARD_SKIP, bytes);
    false
}

/// A flow as the data path records it.
pub struct NewFlow<'a> {
    pub key: &'a FlowKey,
    pub service_id: u32,
    pub backend_id: u32,
    pub backend_generation: u32,
    pub hop: &'a NextHop,
    pub ingress_ifindex: u32,
    /// The packet's IPv4 total length (host order): the hop fits it.
    pub tot_len: u16,
}

/// Records the flow (one insert), with the next hop towards the backend,
/// unless the flood guard refuses; whether it did. A failed insert (the map
/// is full of entries the LRU could not evict) is counted; the packet is
/// forwarded anyway.
#[inline(always)]
pub fn record(flow: &NewFlow, now: u64, bytes: u64) -> bool {
    if !flood_guard_allows(now, bytes) {
        return false;
    }
    // Built in this CPU's slot, not on the stack the IPv6 program's
    // addresses fill.
    let Some(entry) = NEW_FLOW.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot; nothing else writes it.
    let entry = unsafe { &mut *entry };
    *entry = Flow {
        backend_id: flow.backend_id,
        service_id: flow.service_id,
        backend_generation: flow.backend_generation,
        state: flow_state::OPEN,
        _pad: [0; 3],
        last_seen_ns: now,
        expires_ns: now + lifetime(flow.key.proto, flow_state::OPEN),
        to_backend: CachedHop::default(),
    };
    store_hop(
        &raw mut entry.to_backend,
        flow.hop,
        flow.ingress_ifindex,
        flow.tot_len,
        now,
    );
    if FLOWS.insert(flow.key, &*entry, 0).is_err() {
        counters::reason(reason::EVENT_CONNTRACK_INSERT_FAILED, bytes);
        return false;
    }
    counters::reason(reason::EVENT_FLOW_RECORDED, bytes);
    true
}
