//! Connection tracking and backend selection.
//!
//! A flow's forward entry (client → VIP tuple) names its backend; its reply
//! entry (backend → client tuple) names the VIP to restore. Both cache the
//! next hop of their direction, refreshed with the last-seen time at most
//! once per `LAST_SEEN_GRANULARITY_NS`, so a packet of a tracked flow costs one
//! hash lookup and no route lookup. A new flow, or a tracked one whose
//! backend is no longer usable, is hashed over the service's selection (the
//! usable backends of its active tier).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use failover_common::{
    Backend, Flow, FlowKey, LAST_SEEN_GRANULARITY_NS, MaglevKey, Service, backend_state,
    flow_direction,
    hash::{FLOW_HASH_SEED, flow_hash},
    pick::{self, PickMaps},
    stats::reason,
    usable_for_established,
};

use crate::{
    counters,
    fib::NextHop,
    maps::{BACKENDS, CONNTRACK, MAGLEV},
};

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn backend(id: u32) -> Option<Backend> {
    BACKENDS.get(id).copied()
}

/// The backend an entry was recorded with, if its slot still has that owner
/// (same generation): an id freed by a reload and given to another backend
/// or service never inherits the old owner's flows.
#[inline(always)]
pub fn recorded_backend(entry: *mut Flow) -> Option<(u32, Backend)> {
    // SAFETY: a live LRU value.
    let (backend_id, generation) = unsafe { ((*entry).backend_id, (*entry).backend_generation) };
    let backend = backend(backend_id)?;
    (backend.generation == generation && backend.state != backend_state::EMPTY)
        .then_some((backend_id, backend))
}

/// The backend of a tracked forward flow, if it may keep the flow.
#[inline(always)]
pub fn established(entry: *mut Flow) -> Option<(u32, Backend)> {
    let (backend_id, backend) = recorded_backend(entry)?;
    usable_for_established(backend.state).then_some((backend_id, backend))
}

/// Whether a reply arrived on the interface its flow's backend is reached
/// by (any, for an entry that does not know it).
#[inline(always)]
pub fn reply_arrived_where_expected(entry: *mut Flow, ingress_ifindex: u32) -> bool {
    // SAFETY: a live LRU value.
    let expected = unsafe { (*entry).reply_ingress_ifindex };
    expected == 0 || expected == ingress_ifindex
}

/// The entry's cached next hop, if it is fresh and for this ingress
/// interface. Refreshes last-seen when it is not.
#[inline(always)]
pub fn cached_hop(entry: *mut Flow, ingress_ifindex: u32, now: u64) -> Option<NextHop> {
    // SAFETY: a live LRU value; racing writers store equivalent values.
    unsafe {
        if now.wrapping_sub((*entry).last_seen_ns) > LAST_SEEN_GRANULARITY_NS {
            (*entry).last_seen_ns = now;
            return None;
        }
        let ifindex = (*entry).nh_ifindex;
        if ifindex == 0 || (*entry).nh_ingress_ifindex != ingress_ifindex {
            return None;
        }
        Some(NextHop::Forward {
            ifindex,
            src_mac: (*entry).nh_src_mac,
            dst_mac: (*entry).nh_dst_mac,
        })
    }
}

/// Caches a resolved next hop in the entry (only a forwarding one).
#[inline(always)]
pub fn store_hop(entry: *mut Flow, hop: &NextHop, ingress_ifindex: u32) {
    if let NextHop::Forward {
        ifindex,
        src_mac,
        dst_mac,
    } = hop
    {
        // SAFETY: a live LRU value.
        unsafe {
            (*entry).nh_ifindex = *ifindex;
            (*entry).nh_ingress_ifindex = ingress_ifindex;
            (*entry).nh_src_mac = *src_mac;
            (*entry).nh_dst_mac = *dst_mac;
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

/// Picks a backend for a new flow (`failover_common::pick`, the same code
/// `inspect explain` runs); a stale entry met on the way is counted.
/// `None`: no usable backend.
#[inline(always)]
pub fn pick(key: &FlowKey, service: &Service, bytes: u64) -> Option<(u32, Backend)> {
    let (picked, stale) = pick::pick(&ProgramMaps, service, flow_hash(key, FLOW_HASH_SEED));
    if stale {
        counters::reason(reason::EVENT_STALE_SELECTION, bytes);
    }
    picked.map(|p| (p.backend_id, p.backend))
}

/// A new flow as the data path records it.
pub struct NewFlow<'a> {
    pub forward: &'a FlowKey,
    pub reply: &'a FlowKey,
    pub service_id: u32,
    pub backend_id: u32,
    pub backend_generation: u32,
    pub vip: u32,
    pub vip_port: u16,
    pub hop: &'a NextHop,
    pub ingress_ifindex: u32,
}

/// Records the flow in both directions, with the forward next hop. Failure
/// (the map is full of entries the LRU could not evict) is counted; the
/// packet is forwarded anyway.
#[inline(always)]
pub fn record(flow: &NewFlow, bytes: u64) {
    // The reply entry is written from the same stack slot, once the forward
    // one is in the map: the program's stack is close to the verifier's
    // limit.
    let reply_ingress_ifindex = flow.hop.egress_ifindex();
    let mut entry = Flow {
        nat_addr: [0; 4],
        nat_port_be: 0,
        direction: flow_direction::FORWARD,
        _pad: 0,
        backend_id: flow.backend_id,
        service_id: flow.service_id,
        nh_ifindex: 0,
        last_seen_ns: now(),
        nh_ingress_ifindex: 0,
        backend_generation: flow.backend_generation,
        nh_src_mac: [0; 6],
        nh_dst_mac: [0; 6],
        reply_ingress_ifindex: 0,
    };
    store_hop(&raw mut entry, flow.hop, flow.ingress_ifindex);
    let forward_failed = CONNTRACK.insert(flow.forward, entry, 0).is_err();
    entry.nat_addr = [flow.vip, 0, 0, 0];
    entry.nat_port_be = flow.vip_port;
    entry.direction = flow_direction::REPLY;
    entry.reply_ingress_ifindex = reply_ingress_ifindex;
    // The reply direction caches its own next hop.
    entry.nh_ifindex = 0;
    entry.nh_ingress_ifindex = 0;
    entry.nh_src_mac = [0; 6];
    entry.nh_dst_mac = [0; 6];
    if forward_failed || CONNTRACK.insert(flow.reply, entry, 0).is_err() {
        counters::reason(reason::EVENT_CONNTRACK_INSERT_FAILED, bytes);
    }
}
