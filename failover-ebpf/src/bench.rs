//! Benchmark harness programs for BPF_PROG_TEST_RUN.
//!
//! `repeat=N` runs a program N times on the same buffer, so after the first
//! rewrite the frame no longer targets the VIP and the rest would time the
//! miss path. `bench_restore` copies the template frame back before every
//! repetition and tail-calls the program under test; measuring it with the
//! pass program as target gives the floor to subtract or compare against.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_TX},
    macros::{map, xdp},
    maps::{Array, ProgramArray},
    programs::XdpContext,
};

/// Every benchmark frame has exactly this many bytes.
const FRAME_LEN: usize = 64;

/// Index 0: the frame to restore before each run. Written by the benchmark.
#[map(name = "BENCH_TEMPLATE")]
static TEMPLATE: Array<[u64; FRAME_LEN / 8]> = Array::with_max_entries(1, 0);

/// Index 0: the program under test. Written by the benchmark.
#[map(name = "BENCH_TARGET")]
static TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[xdp]
pub fn bench_restore(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + FRAME_LEN > ctx.data_end() {
        return XDP_ABORTED;
    }
    let Some(template) = TEMPLATE.get(0) else {
        return XDP_ABORTED;
    };
    let frame = start as *mut u64;
    // SAFETY: bounds checked above. BPF_PROG_TEST_RUN places the frame after
    // a 256-byte headroom, so it is 8-byte aligned: eight word stores instead
    // of the 64 byte stores an unaligned copy compiles to on BPF.
    unsafe {
        for (i, word) in template.iter().enumerate() {
            frame.add(i).write(*word);
        }
        TARGET.tail_call(&ctx, 0);
    }
    // Only reached when the tail call failed.
    XDP_ABORTED
}

/// The "do something useful" floor: swap MACs and bounce the frame.
#[xdp]
pub fn bench_macswap(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return XDP_ABORTED;
    }
    let macs = start as *mut [[u8; 6]; 2];
    // SAFETY: bounds checked above.
    unsafe {
        let [dst, src] = core::ptr::read_unaligned(macs);
        core::ptr::write_unaligned(macs, [src, dst]);
    }
    XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
