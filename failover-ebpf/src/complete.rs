//! Completing partial checksums. A local socket sending over a veth with
//! transmit checksum offload leaves the L4 checksum as the pseudo-header
//! sum only (CHECKSUM_PARTIAL): the device is meant to finish it. A frame
//! redirected natively loses that state, and the receiver then finds the
//! checksum wrong. XDP cannot see the kernel's checksum state, so a packet
//! whose checksum looks partial is checked in full (one full checksum in
//! 65,536 looks partial by chance, and is left alone); a really partial one
//! gets its checksum computed in full after the rewrite. Only such packets
//! pay for it.

use aya_ebpf::{
    bindings::xdp_md,
    helpers::{bpf_csum_diff, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use failover_common::{PROTO_UDP, csum};

use crate::{
    family::Family,
    maps::SCRATCH,
    nat::l4_len,
    parse::{L3, L4},
};

/// Bytes summed per helper call (the scratch buffer; the helper's limit).
const CHUNK: u32 = 512;
/// Longest L4 segment completed (jumbo frames); longer ones are left as
/// they are.
const MAX_CHUNKS: u32 = 18;

/// The L4 segment's length and offset in the frame.
#[inline(always)]
fn segment<F: Family>(l3: &L3<F>) -> (u16, u32) {
    (l4_len(l3), l3.payload as u32)
}

/// One's-complement sum of `len` bytes at `offset`, or `None` when the
/// segment is longer than we complete or a helper fails.
#[inline(always)]
fn data_sum(ctx: &XdpContext, offset: u32, len: u16) -> Option<u64> {
    let scratch = SCRATCH.get_ptr_mut(0)?;
    let len = u32::from(len);
    if len > CHUNK * MAX_CHUNKS {
        return None;
    }
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < MAX_CHUNKS {
        let done = i * CHUNK;
        if done >= len {
            break;
        }
        let left = len - done;
        let take = if left < CHUNK { left } else { CHUNK };
        // Rounded up to whole words; the bytes past `take` must be zero.
        let words = (take + 3) / 4;
        // SAFETY: the scratch value is CHUNK bytes; `words` <= CHUNK / 4.
        unsafe {
            if words > 0 && words <= CHUNK / 4 {
                (*scratch)[(words - 1) as usize & 127] = 0;
            }
        }
        // LLVM knows 1 <= take <= CHUNK and drops checks the verifier needs
        // (it loses the lower bound): hide the value, then check.
        // SAFETY: reading a local.
        let take = unsafe { core::ptr::read_volatile(&take) };
        if take == 0 || take > CHUNK {
            return None;
        }
        // SAFETY: ctx is the program's context; the scratch buffer holds
        // CHUNK bytes and take <= CHUNK.
        let loaded = unsafe {
            bpf_xdp_load_bytes(ctx.ctx as *mut xdp_md, offset + done, scratch.cast(), take)
        };
        if loaded != 0 {
            return None;
        }
        // Whole words (the zeroed tail included), proven to the verifier.
        let size = (take + 3) & !3;
        // SAFETY: reading a local.
        let size = unsafe { core::ptr::read_volatile(&size) };
        if size == 0 || size > CHUNK {
            return None;
        }
        // SAFETY: the buffer holds `size` <= CHUNK readable bytes.
        let partial = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, scratch.cast(), size, 0) };
        if partial < 0 {
            return None;
        }
        sum += partial as u64 & 0xffff_ffff;
        i += 1;
    }
    Some(sum)
}

/// Whether the checksum of a packet that looked partial really is: true
/// when the segment does not verify as a full checksum. Call before the
/// rewrite.
#[inline(always)]
pub fn really_partial<F: Family>(ctx: &XdpContext, l3: &L3<F>, l4: &L4) -> bool {
    let (len, offset) = segment(l3);
    match data_sum(ctx, offset, len) {
        Some(data) => csum::fold(F::pseudo_sum(l3.ip, l4.proto, len) + data) != 0xffff,
        // Cannot tell: leave the packet as it is.
        None => false,
    }
}

/// Computes the L4 checksum of the (rewritten) packet in full.
#[inline(always)]
pub fn complete<F: Family>(ctx: &XdpContext, l3: &L3<F>, l4: &L4) {
    let (len, offset) = segment(l3);
    // SAFETY: the checksum pointer was bounds-checked by the parser.
    let old = unsafe { core::ptr::read_unaligned(l4.check_ptr) };
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned(l4.check_ptr, 0) };
    let Some(data) = data_sum(ctx, offset, len) else {
        // SAFETY: as above.
        unsafe { core::ptr::write_unaligned(l4.check_ptr, old) };
        return;
    };
    let mut check = !csum::fold(F::pseudo_sum(l3.ip, l4.proto, len) + data);
    if check == 0 && l4.proto == PROTO_UDP {
        check = 0xffff;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_unaligned(l4.check_ptr, check) };
}

/// Whether the packet's L4 checksum is partial; counted.
#[inline(always)]
pub fn is_partial<F: Family>(ctx: &XdpContext, l3: &L3<F>, l4: &L4, bytes: u64) -> bool {
    let partial = crate::nat::looks_partial(l3, l4) && really_partial(ctx, l3, l4);
    if partial {
        crate::counters::reason(
            failover_common::stats::reason::EVENT_PARTIAL_CHECKSUM,
            bytes,
        );
    }
    partial
}

/// Rewrites one end's address and port (`nat::rewrite`), leaving the L4
/// checksum complete when the sender had left it partial.
#[inline(always)]
pub fn rewrite<F: Family>(
    ctx: &XdpContext,
    l3: &L3<F>,
    l4: &L4,
    end: crate::nat::End,
    (addr, port): (F::Addr, u16),
    bytes: u64,
) {
    let partial = is_partial(ctx, l3, l4, bytes);
    crate::nat::rewrite::<F>(l3.ip, l4, end, addr, port);
    if partial {
        complete(ctx, l3, l4);
    }
}
