//! The SYN flood: `bench_syn_flood` generates TCP SYNs (or whatever TCP
//! template it is given) from a new spoofed source each (live-frames test
//! runs, like `bench_generate`), and
//! `bench_door`, on the backends' interfaces, counts and drops those that
//! reach a backend.

use aya_ebpf::{
    bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
    helpers::bpf_get_smp_processor_id,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};

use crate::{UDP_SOURCE_PORT_AT, next_in, write_template};

/// Index 0: SYNs this CPU's flood generated so far (picks the tuple).
#[map(name = "BENCH_FLOOD_SEQ")]
static FLOOD_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
/// Spoofed source ports cycle through this many values from the first.
const SPOOFED_PORTS: u32 = 64_000;
/// The template's source port; its source address ends in `.0.0`.
const FIRST_SPOOFED_PORT: u16 = 1024;
/// Offsets in an untagged IPv4/TCP frame without options.
const IPV4_CHECKSUM_AT: usize = 24;
const IPV4_SRC_LOW_AT: usize = 28;
const TCP_CHECKSUM_AT: usize = 50;

/// `checksum` (as stored) after 16-bit words of the covered data went from
/// `old` to `new` (RFC 1624, eqn. 3).
#[inline(always)]
fn checksum_after(checksum: u16, changes: [(u16, u16); 2]) -> u16 {
    let mut sum = u32::from(!checksum);
    for (old, new) in changes {
        sum += u32::from(!old) + u32::from(new);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Reads a big-endian 16-bit field (bounds checked by the caller).
#[inline(always)]
unsafe fn field(at: usize) -> u16 {
    // SAFETY: the caller checked `at + 2` is inside the frame.
    u16::from_be_bytes(unsafe { (at as *const [u8; 2]).read_unaligned() })
}

/// Writes a big-endian 16-bit field (bounds checked by the caller).
#[inline(always)]
unsafe fn set_field(at: usize, value: u16) {
    // SAFETY: the caller checked `at + 2` is inside the frame.
    unsafe { (at as *mut [u8; 2]).write_unaligned(value.to_be_bytes()) }
}

/// Flood generator for live-frames test runs: the template is a TCP frame
/// (a SYN, or a first ACK) from `x.y.0.0:FIRST_SPOOFED_PORT`; the `n`th frame of CPU `c` comes from
/// source port `FIRST_SPOOFED_PORT + n % SPOOFED_PORTS` of address `x.y.h.l`
/// where `hl`, 16 bits, is `c` (4 bits) then `n / SPOOFED_PORTS` (12 bits):
/// 262 million tuples per CPU before one repeats, none shared between CPUs
/// (a test run's thread may change CPU between runs). Both checksums are
/// updated for the new address and port.
#[xdp]
pub fn bench_syn_flood(ctx: XdpContext) -> u32 {
    let (Some(start), Some(n)) = (write_template(&ctx), next_in(&FLOOD_SEQ)) else {
        return XDP_ABORTED;
    };
    // SAFETY: helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u16;
    let host = (cpu & 0xf) << 12 | (n / SPOOFED_PORTS) as u16 & 0xfff;
    let port = FIRST_SPOOFED_PORT + (n % SPOOFED_PORTS) as u16;
    // SAFETY: every field lies inside the FRAME_LEN bytes write_template
    // checked.
    unsafe {
        set_field(start + IPV4_SRC_LOW_AT, host);
        set_field(start + UDP_SOURCE_PORT_AT, port);
        let ip = field(start + IPV4_CHECKSUM_AT);
        set_field(
            start + IPV4_CHECKSUM_AT,
            checksum_after(ip, [(0, host), (0, 0)]),
        );
        let tcp = field(start + TCP_CHECKSUM_AT);
        set_field(
            start + TCP_CHECKSUM_AT,
            checksum_after(tcp, [(0, host), (FIRST_SPOOFED_PORT, port)]),
        );
    }
    XDP_TX
}

/// Per CPU: spoofed SYNs `bench_door` dropped.
#[map(name = "BENCH_DOOR_COUNTS")]
static DOOR_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
/// Offset of the IPv4 source address in an untagged frame.
const IPV4_SRC_AT: usize = 26;

/// A backend's door: counts and drops IPv4 packets from the flood's range
/// (198.18.0.0/15), passes everything else to the backend's stack.
#[xdp]
pub fn bench_door(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + IPV4_SRC_AT + 2 > ctx.data_end() {
        return XDP_PASS;
    }
    // SAFETY: bounds checked above.
    let (ethertype, source) = unsafe {
        (
            field(start + 12),
            ((start + IPV4_SRC_AT) as *const [u8; 2]).read_unaligned(),
        )
    };
    if ethertype != 0x0800 || source[0] != 198 || source[1] & 0xfe != 18 {
        return XDP_PASS;
    }
    if let Some(count) = DOOR_COUNTS.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot only this CPU writes.
        unsafe { *count += 1 };
    }
    XDP_DROP
}
