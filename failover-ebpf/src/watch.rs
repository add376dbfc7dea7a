//! Watching the kernel drop frames we redirected. A redirect to a device
//! that cannot transmit XDP frames (a veth whose peer has no NAPI, a driver
//! without XDP transmit) fails at once and the frame is dropped silently;
//! the kernel reports it in the `xdp:xdp_redirect_err` tracepoint with the
//! id of the program that redirected. Tracepoints are host-wide, so only
//! our own program's failures are counted (another agent in another
//! network namespace has its own), per egress interface; the agent reacts
//! (logs the remedy and sends that interface's packets through the stack).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::maps::{REDIRECT_DROPS, WATCHED_PROGRAM};

/// Offsets of `prog_id` and `to_ifindex` in the `xdp_redirect_err` record
/// (tracefs `events/xdp/xdp_redirect_err/format`; the agent checks them
/// before attaching).
pub const PROG_ID_OFFSET: usize = 8;
pub const TO_IFINDEX_OFFSET: usize = 24;

const BPF_NOEXIST: u64 = 1;

/// `xdp:xdp_redirect_err`: a redirect that failed at once (one frame).
#[tracepoint]
pub fn failover_redirect_watch(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets checked against the tracepoint's format by the agent;
    // the helper bounds the read.
    let (prog, to) = unsafe {
        (
            ctx.read_at::<u32>(PROG_ID_OFFSET).unwrap_or(0),
            ctx.read_at::<i32>(TO_IFINDEX_OFFSET).unwrap_or(0),
        )
    };
    let ours = WATCHED_PROGRAM.get(0).copied().unwrap_or(0);
    if prog == 0 || prog != ours || to <= 0 {
        return 0;
    }
    crate::counters::redirect_failed();
    let key = to as u32;
    match REDIRECT_DROPS.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a live per-CPU value.
        Some(count) => unsafe { *count += 1 },
        None => {
            // A racing first insert on another CPU may win; this CPU's
            // drops then count from the next one.
            let _ = REDIRECT_DROPS.insert(key, 1, BPF_NOEXIST);
        }
    }
    0
}
