//! Rate limits for what the program sends or passes on besides traffic:
//! its own ICMP answers (per CPU) and the ICMP errors it translates (per
//! service and CPU). A window counts one second; past the limit, the
//! caller drops and counts.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use failover_common::MAX_SERVICES;

use crate::conntrack;

/// ICMP "fragmentation needed" answers a CPU sends a second at most
/// (Linux's own ICMP rate is of this order).
const ANSWERS_PER_CPU_SECOND: u32 = 1_000;
/// Translated ICMP errors a service passes on per CPU and second at most.
const TRANSLATIONS_PER_SERVICE_SECOND: u32 = 1_000;
const WINDOW_NS: u64 = 1_000_000_000;

/// What a window has let through.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Window {
    started_ns: u64,
    passed: u32,
    _pad: u32,
}

/// Per CPU: the program's answers. Not pinned: each program its own.
#[map(name = "FO_ANSWER_RATE")]
static ANSWERS: PerCpuArray<Window> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU, by service id: translated ICMP errors. Not pinned.
#[map(name = "FO_ICMP_RATE")]
static TRANSLATIONS: PerCpuArray<Window> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// Whether the window of `slot` lets one more through (and counts it).
#[inline(always)]
fn allows(slot: Option<*mut Window>, limit: u32) -> bool {
    let Some(window) = slot else {
        return false;
    };
    let now = conntrack::now();
    // SAFETY: this CPU's slot.
    unsafe {
        if now.wrapping_sub((*window).started_ns) > WINDOW_NS {
            (*window).started_ns = now;
            (*window).passed = 0;
        }
        if (*window).passed >= limit {
            return false;
        }
        (*window).passed += 1;
    }
    true
}

/// Whether this CPU may send another ICMP answer this second.
#[inline(always)]
pub fn answer_allowed() -> bool {
    allows(ANSWERS.get_ptr_mut(0), ANSWERS_PER_CPU_SECOND)
}

/// Whether `service_id` may pass on another translated ICMP error this
/// second on this CPU.
#[inline(always)]
pub fn translation_allowed(service_id: u32) -> bool {
    allows(
        TRANSLATIONS.get_ptr_mut(service_id),
        TRANSLATIONS_PER_SERVICE_SECOND,
    )
}
