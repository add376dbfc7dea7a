//! ICMP errors about tracked flows, in both directions.
//!
//! A backend (or a router on the way to it) answers a client's packet it
//! cannot take with an ICMP error — port unreachable from a UDP backend
//! with nothing listening, fragmentation needed, time exceeded. The error
//! embeds the header of the client's packet as it reached the backend
//! (client → backend:port), which the client would not recognise. For a
//! tracked flow the error is translated as the flow's replies are: the
//! outer source becomes the VIP, the embedded destination the VIP and
//! service port, every checksum follows; the client's socket then learns of
//! the error at once instead of timing out. The other way, an error from
//! the path towards a client (a router's "fragmentation needed" about a
//! large reply) embeds the reply as it left us (VIP:port → client) and is
//! addressed to the VIP: for a tracked flow it goes to the flow's backend,
//! with the backend put back where the VIP is, so the backend's socket
//! learns of it.
//!
//! Contract: pointers come from [`parse_error`], which proves every header
//! used here is in the frame and in the datagram. Checksums are updated
//! incrementally (a wrong one stays exactly as wrong). Every field changed
//! inside the ICMP message starts at an even offset from it, so the raw
//! 16-bit updates of [`csum`] apply to the ICMP checksum as they are.

use core::{
    mem::size_of,
    ptr::{null_mut, read_unaligned, write_unaligned},
};

use aya_ebpf::programs::XdpContext;
use failover_common::{FlowKey, PROTO_TCP, PROTO_UDP, ReverseKey, csum};

use crate::family::{Family, V4};
use crate::nat::End;
use crate::parse::{
    IPV4_FRAGMENT_MASK_BE, IPV4_MIN_LEN, Ipv4Hdr, L3, TcpHdr, UdpHdr, datagram_complete, ptr_at,
};

pub const PROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;

#[repr(C, packed(2))]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    /// Unused, or the next-hop MTU of "fragmentation needed".
    pub rest: u32,
}
const ICMP_LEN: usize = size_of::<IcmpHdr>();
const UDP_HEADER_LEN: usize = size_of::<UdpHdr>();

/// The first 4 bytes of an embedded TCP or UDP header: all an ICMP error is
/// sure to carry beyond the 8 that RFC 792 requires.
#[repr(C, packed(2))]
#[derive(Clone, Copy)]
struct Ports {
    src: u16,
    dst: u16,
}

/// An ICMP error about a TCP or UDP packet, with its embedded headers.
pub struct IcmpError {
    icmp: *mut IcmpHdr,
    inner: *mut Ipv4Hdr,
    inner_proto: u8,
    inner_ports: *mut Ports,
    /// The embedded L4 checksum, or null when the error cut it off (a TCP
    /// header is embedded whole only when the sender kept more than 8 bytes).
    inner_check: *mut u16,
}

/// The ICMP error this IPv4 frame carries, if it is a destination
/// unreachable or time exceeded about an unfragmented TCP or UDP packet whose
/// headers are all in the frame; `None` for anything else.
#[inline(always)]
pub fn parse_error(ctx: &XdpContext, l3: &L3<V4>) -> Option<IcmpError> {
    if l3.proto != PROTO_ICMP {
        return None;
    }
    let icmp: *mut IcmpHdr = ptr_at(ctx, l3.payload)?;
    // SAFETY: bounds checked by ptr_at.
    let kind = unsafe { (*icmp).kind };
    if kind != ICMP_DEST_UNREACHABLE && kind != ICMP_TIME_EXCEEDED {
        return None;
    }
    let inner_offset = l3.payload + ICMP_LEN;
    let inner: *mut Ipv4Hdr = ptr_at(ctx, inner_offset)?;
    // SAFETY: bounds checked by ptr_at.
    let (version_ihl, frag_off, inner_proto) =
        unsafe { ((*inner).version_ihl, (*inner).frag_off, (*inner).proto) };
    let inner_ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || inner_ihl < IPV4_MIN_LEN || frag_off & IPV4_FRAGMENT_MASK_BE != 0 {
        return None;
    }
    if inner_proto != PROTO_TCP && inner_proto != PROTO_UDP {
        return None;
    }
    let l4_offset = inner_offset + inner_ihl;
    // RFC 792: the embedded datagram's first 8 bytes of payload follow
    // (ports, and UDP's checksum). The pointer checks come before the
    // length checks: had LLVM seen those first, it would drop the pointer
    // checks as implied, and the verifier needs them.
    let first_8: *mut UdpHdr = ptr_at(ctx, l4_offset)?;
    let inner_ports = first_8.cast::<Ports>();
    let inner_check = if inner_proto == PROTO_UDP {
        // SAFETY: bounds checked by ptr_at.
        unsafe { &raw mut (*first_8).check }
    } else {
        match ptr_at::<TcpHdr>(ctx, l4_offset) {
            // SAFETY: bounds checked by ptr_at.
            Some(tcp) if l3.end >= l4_offset + size_of::<TcpHdr>() => unsafe {
                &raw mut (*tcp).check
            },
            _ => null_mut(),
        }
    };
    if l3.end < l4_offset + UDP_HEADER_LEN || !datagram_complete(ctx, l3) {
        return None;
    }
    Some(IcmpError {
        icmp,
        inner,
        inner_proto,
        inner_ports,
        inner_check,
    })
}

/// The backend endpoint the embedded packet was sent to (client →
/// backend, as the data path forwarded it): its `FO_REVERSE` key.
#[inline(always)]
pub fn reverse_key(error: &IcmpError) -> ReverseKey {
    // SAFETY: bounds proven by parse_error().
    let (backend, backend_port) = unsafe { ((*error.inner).dst, (*error.inner_ports).dst) };
    ReverseKey::ipv4([backend, 0, 0, 0], backend_port, error.inner_proto)
}

/// The client the error is about (the embedded packet's sender).
#[inline(always)]
pub fn client(error: &IcmpError) -> u32 {
    // SAFETY: bounds proven by parse_error().
    unsafe { (*error.inner).src }
}

/// The flow the embedded packet is a reply of (VIP:port → client, as the
/// data path sent it): its `FO_FLOWS` key, client → VIP.
#[inline(always)]
pub fn reply_flow_key(error: &IcmpError) -> FlowKey {
    // SAFETY: bounds proven by parse_error().
    let (vip, client, ports) = unsafe {
        (
            (*error.inner).src,
            (*error.inner).dst,
            read_unaligned(error.inner_ports),
        )
    };
    FlowKey::ipv4(
        [client, 0, 0, 0],
        [vip, 0, 0, 0],
        ports.dst,
        ports.src,
        error.inner_proto,
    )
}

/// Rewrites the error as if the VIP had sent it about the client's packet
/// to the VIP: outer source, embedded destination address and port, and
/// the outer, embedded and ICMP checksums.
#[inline(always)]
pub fn translate_to_client(ip: *mut Ipv4Hdr, error: &IcmpError, vip: u32, vip_port: u16) {
    // SAFETY: `ip` from parse_l3().
    unsafe {
        let old_src = (*ip).src;
        (*ip).src = vip;
        (*ip).check = csum::update32((*ip).check, old_src, vip);
    }
    rewrite_embedded(error, End::Destination, vip, vip_port);
}

/// Rewrites the error for the backend that sent the reply it embeds:
/// outer destination, embedded source address and port, and every
/// checksum.
#[inline(always)]
pub fn translate_to_backend(ip: *mut Ipv4Hdr, error: &IcmpError, backend: u32, port: u16) {
    // SAFETY: `ip` from parse_l3().
    unsafe {
        let old_dst = (*ip).dst;
        (*ip).dst = backend;
        (*ip).check = csum::update32((*ip).check, old_dst, backend);
    }
    rewrite_embedded(error, End::Source, backend, port);
}

/// Rewrites one end of the embedded packet to `addr`:`port`, with its IP
/// and L4 checksums and the ICMP checksum that covers them.
#[inline(always)]
fn rewrite_embedded(error: &IcmpError, end: End, addr: u32, port: u16) {
    // SAFETY: proven by parse_error().
    unsafe {
        let inner = error.inner;
        let mut icmp_check = (*error.icmp).check;
        let addr_ptr = match end {
            End::Source => &raw mut (*inner).src,
            End::Destination => &raw mut (*inner).dst,
        };
        let old_addr = read_unaligned(addr_ptr);
        let old_inner_check = (*inner).check;
        write_unaligned(addr_ptr, addr);
        (*inner).check = csum::update32(old_inner_check, old_addr, addr);
        icmp_check = csum::update32(icmp_check, old_addr, addr);
        icmp_check = csum::update16(icmp_check, old_inner_check, (*inner).check);

        let port_ptr = match end {
            End::Source => &raw mut (*error.inner_ports).src,
            End::Destination => &raw mut (*error.inner_ports).dst,
        };
        let old_port = read_unaligned(port_ptr);
        write_unaligned(port_ptr, port);
        icmp_check = csum::update16(icmp_check, old_port, port);

        if !error.inner_check.is_null() {
            let old = read_unaligned(error.inner_check);
            let new = crate::nat::l4_check_after_port(
                error.inner_proto,
                V4::l4_check_after_addr(error.inner_proto, old, old_addr, addr),
                old_port,
                port,
            );
            write_unaligned(error.inner_check, new);
            icmp_check = csum::update16(icmp_check, old, new);
        }
        (*error.icmp).check = icmp_check;
    }
}
