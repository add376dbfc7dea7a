//! Benchmark harness programs for BPF_PROG_TEST_RUN.
//!
//! `repeat=N` runs a program N times on the same buffer, so after the first
//! rewrite the frame no longer targets the VIP and the rest would time the
//! miss path. `bench_restore` copies the template frame back before every
//! repetition and tail-calls the program under test; measuring it with the
//! pass program as target gives the floor to subtract or compare against.
//!
//! The packet-rate bench adds a traffic generator and a sink:
//! `bench_generate` runs under BPF_PROG_TEST_RUN in live-frames mode, where
//! XDP_TX sends the frame out of the ctx's ingress veth; `bench_sink` sits on
//! the far veth, counts what arrives and drops it.
//!
//! The SYN flood adds a second generator, `bench_syn_flood` (a new spoofed
//! source for every frame, checksums kept valid), and `bench_door` on the
//! backends' interfaces, which counts and drops the spoofed SYNs that
//! reach them: the lab's backends share our two cores, so their kernels
//! must not spend them on a flood a real backend would absorb elsewhere.
//!
//! `reference` holds the minimal NAT and pass programs our data path is
//! compared with.
#![no_std]
#![no_main]

mod flood;
mod reference;

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_TX},
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};

/// Every benchmark frame has exactly this many bytes.
const FRAME_LEN: usize = 64;

/// Index 0: the frame to restore before each run (`bench_restore`) or to
/// send (`bench_generate`). Written by the benchmark.
#[map(name = "BENCH_TEMPLATE")]
static TEMPLATE: Array<[u64; FRAME_LEN / 8]> = Array::with_max_entries(1, 0);

/// Index 0: the program under test. Written by the benchmark.
#[map(name = "BENCH_TARGET")]
static TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// IPv6 benchmark frames have exactly this many bytes (a TCP header after
/// the 40-byte IPv6 header does not fit in `FRAME_LEN`).
const FRAME6_LEN: usize = 96;

/// Index 0: the IPv6 frame to restore before each run
/// (`bench_restore6`). Written by the benchmark.
#[map(name = "BENCH_TEMPLATE6")]
static TEMPLATE6: Array<[u64; FRAME6_LEN / 8]> = Array::with_max_entries(1, 0);

/// Writes the template over the frame's first `FRAME_LEN` bytes and returns
/// where the frame starts; `None` for a shorter frame or a missing template.
#[inline(always)]
pub(crate) fn write_template(ctx: &XdpContext) -> Option<usize> {
    write_words(ctx, &TEMPLATE)
}

/// Writes the `WORDS` words of `template`'s frame over the frame's start
/// (see [`write_template`]).
#[inline(always)]
fn write_words<const WORDS: usize>(
    ctx: &XdpContext,
    template: &Array<[u64; WORDS]>,
) -> Option<usize> {
    let start = ctx.data();
    if start + WORDS * 8 > ctx.data_end() {
        return None;
    }
    let template = template.get(0)?;
    let frame = start as *mut u64;
    // SAFETY: bounds checked above. BPF_PROG_TEST_RUN places the frame after
    // a 256-byte headroom, and live-frames pages 256 bytes after their
    // bookkeeping header (a multiple of 8 bytes), so it is 8-byte aligned:
    // eight word stores instead of the 64 byte stores an unaligned copy
    // compiles to on BPF.
    unsafe {
        for (i, word) in template.iter().enumerate() {
            frame.add(i).write(*word);
        }
    }
    Some(start)
}

/// The next number of a per-CPU sequence (only this CPU writes its slot).
#[inline(always)]
pub(crate) fn next_in(sequence: &PerCpuArray<u32>) -> Option<u32> {
    let slot = sequence.get_ptr_mut(0)?;
    // SAFETY: a per-CPU slot only this CPU writes.
    unsafe {
        let n = *slot;
        *slot = n.wrapping_add(1);
        Some(n)
    }
}

#[xdp]
pub fn bench_restore(ctx: XdpContext) -> u32 {
    if write_template(&ctx).is_none() {
        return XDP_ABORTED;
    }
    // SAFETY: tail call into the program under test.
    unsafe { TARGET.tail_call(&ctx, 0) };
    // Only reached when the tail call failed.
    XDP_ABORTED
}

/// `bench_restore` for IPv6 frames (`BENCH_TEMPLATE6`).
#[xdp]
pub fn bench_restore6(ctx: XdpContext) -> u32 {
    if write_words(&ctx, &TEMPLATE6).is_none() {
        return XDP_ABORTED;
    }
    // SAFETY: tail call into the program under test.
    unsafe { TARGET.tail_call(&ctx, 0) };
    XDP_ABORTED
}

/// Offsets in an untagged IPv6 TCP frame: the source address's last byte
/// and the source port.
const IPV6_SRC_LAST_AT: usize = 14 + 8 + 15;
const IPV6_SOURCE_PORT_AT: usize = 14 + 40;

/// `bench_restore_new_flow` for IPv6 frames.
#[xdp]
pub fn bench_restore_new_flow6(ctx: XdpContext) -> u32 {
    let (Some(start), Some(n)) = (write_words(&ctx, &TEMPLATE6), next_in(&FLOW_SEQ)) else {
        return XDP_ABORTED;
    };
    // SAFETY: both fields lie inside the FRAME6_LEN bytes written; then
    // the tail call into the program under test.
    unsafe {
        ((start + IPV6_SOURCE_PORT_AT) as *mut [u8; 2]).write_unaligned((n as u16).to_be_bytes());
        ((start + IPV6_SRC_LAST_AT) as *mut u8).write((n >> 16) as u8);
        TARGET.tail_call(&ctx, 0);
    }
    XDP_ABORTED
}

/// Index 0: repetitions of `bench_restore_new_flow` on this CPU so far.
#[map(name = "BENCH_FLOW_SEQ")]
static FLOW_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
/// Offset of the last byte of the IPv4 source address (untagged frame).
const IPV4_SRC_LAST_AT: usize = 29;

/// Like `bench_restore`, then gives the frame a 5-tuple no repetition had
/// before (source port and the source address's last byte from a per-CPU
/// count; 16 M flows), so every repetition takes the new-flow path: table
/// lookup and conntrack insert. Checksums are left stale: the program under
/// test updates them incrementally and never validates them.
#[xdp]
pub fn bench_restore_new_flow(ctx: XdpContext) -> u32 {
    let (Some(start), Some(n)) = (write_template(&ctx), next_in(&FLOW_SEQ)) else {
        return XDP_ABORTED;
    };
    // SAFETY: both fields lie inside the FRAME_LEN bytes write_template
    // checked; then the tail call into the program under test.
    unsafe {
        ((start + UDP_SOURCE_PORT_AT) as *mut [u8; 2]).write_unaligned((n as u16).to_be_bytes());
        ((start + IPV4_SRC_LAST_AT) as *mut u8).write((n >> 16) as u8);
        TARGET.tail_call(&ctx, 0);
    }
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

/// Generated frames cycle through this many UDP source ports (a power of two).
const GENERATED_FLOWS: u16 = 1024;
/// The first source port of the generated flows.
const FIRST_SOURCE_PORT: u16 = 10_000;
/// Offset of the UDP (or TCP) source port in an untagged IPv4 frame without
/// options.
pub(crate) const UDP_SOURCE_PORT_AT: usize = 34;
/// Offsets of the IPv4 destination address and the L4 destination port.
const IPV4_DST_AT: usize = 30;
const L4_DST_PORT_AT: usize = 36;

/// Index 0: frames this CPU generated so far (picks the source port).
#[map(name = "BENCH_GEN_SEQ")]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Sink counters, per CPU: every frame, and frames addressed as expected.
#[map(name = "BENCH_SINK_COUNTS")]
static SINK_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);
const SINK_ALL: u32 = 0;
const SINK_EXPECTED: u32 = 1;

/// Index 0: the destination the sink expects, `[address, port]` as the raw
/// network-order bytes of the frame loaded into native integers.
#[map(name = "BENCH_SINK_EXPECT")]
static SINK_EXPECT: Array<[u32; 2]> = Array::with_max_entries(1, 0);

/// Index 0: the first 64 bytes of a frame the sink saw (one in
/// `SAMPLE_EVERY` per CPU), for the benchmark to check the rewrite.
#[map(name = "BENCH_SINK_SAMPLE")]
static SINK_SAMPLE: Array<[u64; FRAME_LEN / 8]> = Array::with_max_entries(1, 0);
const SAMPLE_EVERY: u64 = 1 << 16;

/// Traffic generator for live-frames test runs: live mode recycles pages
/// without re-initialising them (the forwarder rewrote them on the way), so
/// every frame gets the template written again, then its own source port.
#[xdp]
pub fn bench_generate(ctx: XdpContext) -> u32 {
    let (Some(start), Some(n)) = (write_template(&ctx), next_in(&GEN_SEQ)) else {
        return XDP_ABORTED;
    };
    // SAFETY: the port lies inside the FRAME_LEN bytes write_template checked.
    unsafe {
        // UDP checksum 0 (none) in the template: changing the port keeps
        // every checksum valid.
        let port = FIRST_SOURCE_PORT + (n as u16 & (GENERATED_FLOWS - 1));
        ((start + UDP_SOURCE_PORT_AT) as *mut [u8; 2]).write_unaligned(port.to_be_bytes());
    }
    XDP_TX
}

/// Counts arriving frames (and those addressed as expected), samples one
/// now and then, and drops them all.
#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let Some(all) = SINK_COUNTS.get_ptr_mut(SINK_ALL) else {
        return XDP_DROP;
    };
    // SAFETY: a per-CPU slot only this CPU writes.
    let seen = unsafe {
        let seen = *all;
        *all = seen + 1;
        seen
    };
    let start = ctx.data();
    if start + FRAME_LEN > ctx.data_end() {
        return XDP_DROP;
    }
    if seen % SAMPLE_EVERY == 0 {
        keep_sample(start);
    }
    if addressed_as_expected(start)
        && let Some(expected) = SINK_COUNTS.get_ptr_mut(SINK_EXPECTED)
    {
        // SAFETY: as above.
        unsafe { *expected += 1 };
    }
    XDP_DROP
}

/// Copies the frame's first `FRAME_LEN` bytes (bounds checked by the caller).
#[inline(always)]
fn keep_sample(start: usize) {
    let Some(sample) = SINK_SAMPLE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `start + FRAME_LEN` is inside the packet; the map value has
    // FRAME_LEN bytes. Concurrent writers from two CPUs could mix two
    // frames, which the rarity of samples makes harmless for a check.
    unsafe {
        for i in 0..FRAME_LEN / 8 {
            (*sample)[i] = ((start + 8 * i) as *const u64).read_unaligned();
        }
    }
}

/// The frame's IPv4 destination and L4 destination port are the expected
/// ones (bounds checked by the caller).
#[inline(always)]
fn addressed_as_expected(start: usize) -> bool {
    let Some(expected) = SINK_EXPECT.get(0) else {
        return false;
    };
    // SAFETY: both fields lie inside the first FRAME_LEN bytes.
    let (addr, port) = unsafe {
        (
            ((start + IPV4_DST_AT) as *const u32).read_unaligned(),
            ((start + L4_DST_PORT_AT) as *const u16).read_unaligned(),
        )
    };
    addr == expected[0] && u32::from(port) == expected[1]
}

failover_ebpf::program_boilerplate!();
