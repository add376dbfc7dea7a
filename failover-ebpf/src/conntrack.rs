//! Connection tracking and backend selection.
//!
//! A flow's forward entry (client → VIP tuple) names its backend; its reply
//! entry (backend → client tuple) names the VIP to restore. A new flow, or a
//! tracked one whose backend is no longer usable, is hashed over the
//! service's selection (the usable backends of its active tier).

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use failover_common::{
    Backend, Flow, FlowKey, LAST_SEEN_GRANULARITY_NS, MAX_SELECTION, Service, flow_direction,
    hash::{FLOW_HASH_SEED, flow_hash},
    stats::reason,
    usable_for_established, usable_for_new,
};

use crate::{
    counters,
    maps::{BACKENDS, CONNTRACK},
};

/// The backend a packet goes to, and how it was chosen.
pub struct Choice {
    pub backend_id: u32,
    pub backend: Backend,
    /// Entries must be (re)written: new flow or re-pick.
    pub is_new: bool,
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
fn backend(id: u32) -> Option<Backend> {
    BACKENDS.get(id).copied()
}

/// Follows the flow's entry if its backend may keep it, otherwise picks.
/// `None`: the service has no usable backend.
#[inline(always)]
pub fn choose(key: &FlowKey, service: &Service, bytes: u64) -> Option<Choice> {
    if let Some(entry) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: a live LRU value; racing updates of last_seen are benign.
        let (direction, backend_id, last_seen) = unsafe {
            (
                (*entry).direction,
                (*entry).backend_id,
                (*entry).last_seen_ns,
            )
        };
        if direction == flow_direction::FORWARD {
            if let Some(backend) = backend(backend_id)
                && backend.service_id == service.id
                && usable_for_established(backend.state)
            {
                let now = now();
                if now.wrapping_sub(last_seen) > LAST_SEEN_GRANULARITY_NS {
                    unsafe { (*entry).last_seen_ns = now };
                }
                return Some(Choice {
                    backend_id,
                    backend,
                    is_new: false,
                });
            }
            counters::reason(reason::EVENT_REPICK, bytes);
        }
    }
    pick(key, service, bytes).map(|(backend_id, backend)| Choice {
        backend_id,
        backend,
        is_new: true,
    })
}

/// Hashes the flow onto the selection. A slot whose backend is not usable
/// (the agent is between its backend and service updates) is skipped by
/// probing the following slots.
#[inline(always)]
fn pick(key: &FlowKey, service: &Service, bytes: u64) -> Option<(u32, Backend)> {
    let len = service.selection_len;
    if len == 0 || len > MAX_SELECTION as u32 {
        return None;
    }
    let start = flow_hash(key, FLOW_HASH_SEED) % len;
    let mut i = 0;
    while i < MAX_SELECTION as u32 && i < len {
        let slot = (start + i) % len;
        // LLVM knows slot < len <= 64 and would drop a plain mask, but the
        // verifier loses the bound after `%` (kernel 6.18): hide the value
        // from LLVM so the mask stays and proves the index in bounds.
        let slot = unsafe { core::ptr::read_volatile(&slot) } as usize & (MAX_SELECTION - 1);
        let backend_id = service.selection[slot];
        if let Some(backend) = backend(backend_id)
            && backend.service_id == service.id
            && usable_for_new(backend.state)
        {
            if i > 0 {
                counters::reason(reason::EVENT_STALE_SELECTION, bytes);
            }
            return Some((backend_id, backend));
        }
        i += 1;
    }
    None
}

/// Records the flow in both directions. Failure (the map is full of entries
/// the LRU could not evict) is counted; the packet is forwarded anyway.
#[inline(always)]
pub fn record(
    forward: &FlowKey,
    reply: &FlowKey,
    service: &Service,
    backend_id: u32,
    vip: u32,
    vip_port: u16,
    bytes: u64,
) {
    let now = now();
    let forward_entry = Flow {
        nat_addr: [0; 4],
        nat_port_be: 0,
        direction: flow_direction::FORWARD,
        _pad: 0,
        backend_id,
        service_id: service.id,
        _pad2: 0,
        last_seen_ns: now,
    };
    let reply_entry = Flow {
        nat_addr: [vip, 0, 0, 0],
        nat_port_be: vip_port,
        direction: flow_direction::REPLY,
        ..forward_entry
    };
    if CONNTRACK.insert(forward, forward_entry, 0).is_err()
        || CONNTRACK.insert(reply, reply_entry, 0).is_err()
    {
        counters::reason(reason::EVENT_CONNTRACK_INSERT_FAILED, bytes);
    }
}

/// Refreshes a reply entry's last-seen time at the granularity used for
/// forward entries.
#[inline(always)]
pub fn touch(entry: *mut Flow) {
    let now = now();
    // SAFETY: a live LRU value; racing updates of last_seen are benign.
    unsafe {
        if now.wrapping_sub((*entry).last_seen_ns) > LAST_SEEN_GRANULARITY_NS {
            (*entry).last_seen_ns = now;
        }
    }
}
