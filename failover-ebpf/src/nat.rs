//! Address/port rewriting with incremental checksum updates.
//!
//! Contract: pointers come from [`crate::parse`] (bounds already
//! proven); values are network order as loaded. Checksums are updated, never
//! verified or recomputed: a packet that arrived with a bad checksum leaves
//! with exactly the same error, so the receiver still rejects it.

use core::ptr::{read_unaligned, write_unaligned};

use failover_common::{PROTO_UDP, csum};

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};

use crate::{
    family::Family,
    parse::{EthHdr, L3, L4, VLAN_LEN, ptr_at},
};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Destination: client → VIP becomes client → backend.
    Destination,
    /// Source: backend → client becomes VIP → client.
    Source,
}

/// Rewrites one end's address and port, updating the IP (IPv4) and L4
/// checksums.
#[inline(always)]
pub fn rewrite<F: Family>(ip: *mut F::Hdr, l4: &L4, end: End, addr: F::Addr, port: u16) {
    let old_addr = F::set_addr(ip, end, addr);
    let port_ptr = match end {
        End::Destination => l4.dst_port_ptr,
        End::Source => l4.src_port_ptr,
    };
    // SAFETY: the L4 field pointers were bounds-checked by the parser.
    unsafe {
        let old_port = read_unaligned(port_ptr);
        write_unaligned(port_ptr, port);
        let check = F::l4_check_after_addr(l4.proto, read_unaligned(l4.check_ptr), old_addr, addr);
        write_unaligned(
            l4.check_ptr,
            l4_check_after_port(l4.proto, check, old_port, port),
        );
    }
}

/// A TCP or UDP checksum after a port changed: a UDP checksum of zero
/// stays zero.
#[inline(always)]
pub fn l4_check_after_port(proto: u8, check: u16, old: u16, new: u16) -> u16 {
    if proto == PROTO_UDP {
        csum::udp_update16(check, old, new)
    } else {
        csum::update16(check, old, new)
    }
}

/// Whether the L4 checksum holds only the pseudo-header sum, as a local
/// socket leaves it for the device to complete (CHECKSUM_PARTIAL over
/// veth). XDP cannot see the kernel's checksum state: one full checksum in
/// 65,536 looks like this too (`complete::really_partial` tells them apart).
#[inline(always)]
pub fn looks_partial<F: Family>(l3: &L3<F>, l4: &L4) -> bool {
    // SAFETY: the L4 checksum pointer was bounds-checked by the parser.
    let check = unsafe { read_unaligned(l4.check_ptr) };
    if check == 0 {
        return false;
    }
    csum::fold(F::pseudo_sum(l3.ip, l4.proto, l4_len(l3))) == check
}

/// The transport segment's length, from the IP header's.
#[inline(always)]
pub fn l4_len<F: Family>(l3: &L3<F>) -> u16 {
    l3.end.saturating_sub(l3.payload) as u16
}

/// Removes the frame's VLAN tag and writes the MACs of the untagged
/// Ethernet header (whose type field is then the inner one, already in
/// place). False if the frame cannot be adjusted (then nothing is sent).
#[inline(always)]
pub fn strip_tag(ctx: &XdpContext, src: [u8; 6], dst: [u8; 6]) -> bool {
    // SAFETY: ctx is the program's context; growing data by the tag's size
    // keeps the frame within its buffer.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, VLAN_LEN as i32) } != 0 {
        return false;
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return false;
    };
    set_macs(eth, src, dst);
    true
}

#[inline(always)]
pub fn set_macs(eth: *mut EthHdr, src: [u8; 6], dst: [u8; 6]) {
    // SAFETY: `eth` was bounds-checked by the parser.
    unsafe {
        (*eth).src = src;
        (*eth).dst = dst;
    }
}
