//! Address/port rewriting with incremental checksum updates.
//!
//! Contract: pointers come from [`crate::parse`] (bounds already
//! proven); values are network order as loaded. Checksums are updated, never
//! verified or recomputed: a packet that arrived with a bad checksum leaves
//! with exactly the same error, so the receiver still rejects it.

use core::ptr::{read_unaligned, write_unaligned};

use failover_common::{PROTO_UDP, csum};

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};

use crate::parse::{EthHdr, Ipv4Hdr, L4, VLAN_LEN, ptr_at};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Destination: client → VIP becomes client → backend.
    Destination,
    /// Source: backend → client becomes VIP → client.
    Source,
}

/// Rewrites one end's address and port, updating the IPv4 and L4 checksums.
#[inline(always)]
pub fn rewrite(ip: *mut Ipv4Hdr, l4: &L4, end: End, addr: u32, port: u16) {
    // SAFETY: `ip` and the L4 field pointers were bounds-checked by the parser.
    unsafe {
        let old_addr = match end {
            End::Destination => (*ip).dst,
            End::Source => (*ip).src,
        };
        match end {
            End::Destination => (*ip).dst = addr,
            End::Source => (*ip).src = addr,
        }
        (*ip).check = csum::update32((*ip).check, old_addr, addr);

        let port_ptr = match end {
            End::Destination => l4.dst_port_ptr,
            End::Source => l4.src_port_ptr,
        };
        let old_port = read_unaligned(port_ptr);
        write_unaligned(port_ptr, port);

        let check = read_unaligned(l4.check_ptr);
        write_unaligned(
            l4.check_ptr,
            l4_check_after(l4.proto, check, (old_addr, addr), (old_port, port)),
        );
    }
}

/// A TCP or UDP checksum after one address of its pseudo-header and one
/// port changed (`(old, new)` each): a UDP checksum of zero stays zero.
#[inline(always)]
pub fn l4_check_after(proto: u8, check: u16, addr: (u32, u32), port: (u16, u16)) -> u16 {
    if proto == PROTO_UDP {
        csum::udp_update16(csum::udp_update32(check, addr.0, addr.1), port.0, port.1)
    } else {
        csum::update16(csum::update32(check, addr.0, addr.1), port.0, port.1)
    }
}

/// Whether the L4 checksum holds only the pseudo-header sum, as a local
/// socket leaves it for the device to complete (CHECKSUM_PARTIAL over
/// veth). XDP cannot see the kernel's checksum state: one full checksum in
/// 65,536 looks like this too (`complete::really_partial` tells them apart).
#[inline(always)]
pub fn looks_partial(ip: *const Ipv4Hdr, l4: &L4) -> bool {
    // SAFETY: `ip` and the L4 checksum pointer were bounds-checked by the parser.
    unsafe {
        let check = read_unaligned(l4.check_ptr);
        if check == 0 {
            return false;
        }
        let header_len = u16::from((*ip).version_ihl & 0x0f) * 4;
        let l4_len = u16::from_be((*ip).tot_len).saturating_sub(header_len);
        let (src, dst) = ((*ip).src, (*ip).dst);
        let sum = u64::from(src & 0xffff)
            + u64::from(src >> 16)
            + u64::from(dst & 0xffff)
            + u64::from(dst >> 16)
            + u64::from(u16::from_ne_bytes([0, l4.proto]))
            + u64::from(u16::from_ne_bytes(l4_len.to_be_bytes()));
        csum::fold(sum) == check
    }
}

/// Decrements the TTL as a router does. The caller made sure it is above 1.
#[inline(always)]
pub fn decrement_ttl(ip: *mut Ipv4Hdr) {
    // SAFETY: `ip` was bounds-checked by the parser; TTL and protocol form the
    // 16-bit word the header checksum sees.
    unsafe {
        let ttl = (*ip).ttl;
        let proto = (*ip).proto;
        let old_word = u16::from_ne_bytes([ttl, proto]);
        let new_word = u16::from_ne_bytes([ttl - 1, proto]);
        (*ip).ttl = ttl - 1;
        (*ip).check = csum::update16((*ip).check, old_word, new_word);
    }
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
