//! Per-CPU counter updates. Per-CPU slots need no atomics: only this CPU
//! writes them, and userspace sums the slots.

use failover_common::{Counter, TrafficStats};

use crate::maps::{BACKEND_STATS, REASONS, SERVICE_STATS, VERDICTS};

#[inline(always)]
fn bump(counter: *mut Counter, bytes: u64) {
    // SAFETY: a valid per-CPU slot returned by the map lookup.
    unsafe {
        (*counter).packets += 1;
        (*counter).bytes += bytes;
    }
}

#[inline(always)]
pub fn verdict(action: u32, bytes: u64) {
    if let Some(counter) = VERDICTS.get_ptr_mut(action) {
        bump(counter, bytes);
    }
}

#[inline(always)]
pub fn reason(index: u32, bytes: u64) {
    if let Some(counter) = REASONS.get_ptr_mut(index) {
        bump(counter, bytes);
    }
}

/// Direction of traffic for backend/service counters.
#[derive(Clone, Copy)]
pub enum Towards {
    Backend,
    Client,
}

#[inline(always)]
pub fn traffic(service_id: u32, backend_id: u32, towards: Towards, bytes: u64) {
    if let Some(stats) = SERVICE_STATS.get_ptr_mut(service_id) {
        bump(side(stats, towards), bytes);
    }
    if let Some(stats) = BACKEND_STATS.get_ptr_mut(backend_id) {
        bump(side(stats, towards), bytes);
    }
}

#[inline(always)]
fn side(stats: *mut TrafficStats, towards: Towards) -> *mut Counter {
    // SAFETY: a valid per-CPU slot; we only take a field address.
    unsafe {
        match towards {
            Towards::Backend => &raw mut (*stats).to_backend,
            Towards::Client => &raw mut (*stats).from_backend,
        }
    }
}
