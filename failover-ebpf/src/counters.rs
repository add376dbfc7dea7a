//! Per-CPU counter updates. Per-CPU slots need no atomics: only this CPU
//! writes them, and userspace sums the slots.

use failover_common::{Counter, TrafficStats};

use failover_common::{LastRedirect, stats::reason};

use crate::maps::{BACKEND_STATS, LAST_REDIRECT, REASONS, SERVICE_STATS, VERDICTS};

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

/// Notes the outcome of a frame being redirected, for [`redirect_failed`].
#[inline(always)]
pub fn remember_redirect(reason: u32, bytes: u64) {
    if let Some(last) = LAST_REDIRECT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe {
            *last = LastRedirect {
                reason,
                _pad: 0,
                bytes,
            }
        };
    }
}

/// The kernel refused the frame this CPU just redirected: its outcome and
/// verdict move to `drop_redirect_failed` and drop. (Runs in the
/// tracepoint, on the CPU and right after the program that redirected.)
#[inline(always)]
pub fn redirect_failed() {
    let Some(last) = LAST_REDIRECT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let LastRedirect {
        reason: from,
        bytes,
        ..
    } = unsafe { *last };
    if from >= reason::FIRST_EVENT || bytes == 0 {
        return;
    }
    // SAFETY: this CPU's slot.
    unsafe { (*last).bytes = 0 };
    let moved = |counter: *mut Counter, add: bool| {
        // SAFETY: a valid per-CPU slot.
        unsafe {
            if add {
                (*counter).packets += 1;
                (*counter).bytes += bytes;
            } else {
                (*counter).packets = (*counter).packets.saturating_sub(1);
                (*counter).bytes = (*counter).bytes.saturating_sub(bytes);
            }
        }
    };
    if let (Some(old), Some(new)) = (
        REASONS.get_ptr_mut(from),
        REASONS.get_ptr_mut(reason::DROP_REDIRECT_FAILED),
    ) {
        moved(old, false);
        moved(new, true);
    }
    if let (Some(old), Some(new)) = (
        VERDICTS.get_ptr_mut(XDP_REDIRECT),
        VERDICTS.get_ptr_mut(XDP_DROP),
    ) {
        moved(old, false);
        moved(new, true);
    }
}

const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

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
