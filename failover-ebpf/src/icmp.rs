//! ICMP errors about tracked flows, in both directions, for both families.
//!
//! A backend (or a router on the way to it) answers a client's packet it
//! cannot take with an ICMP error — port unreachable from a UDP backend
//! with nothing listening, fragmentation needed / Packet Too Big, time
//! exceeded. The error embeds the header of the client's packet as it
//! reached the backend (client → backend:port), which the client would not
//! recognise. For a tracked flow the error is translated as the flow's
//! replies are: the outer source becomes the VIP, the embedded destination
//! the VIP and service port, every checksum follows; the client's socket
//! then learns of the error at once instead of timing out. The other way,
//! an error from the path towards a client (a router's "fragmentation
//! needed" about a large reply) embeds the reply as it left us (VIP:port →
//! client) and is addressed to the VIP: for a tracked flow it goes to the
//! flow's backend, with the backend put back where the VIP is, so the
//! backend's socket learns of it.
//!
//! Contract: pointers come from [`parse_error`], which proves every header
//! used here is in the frame and in the datagram. Checksums are updated
//! incrementally (a wrong one stays exactly as wrong). Every field changed
//! inside the ICMP message starts at an even offset from it, so the raw
//! 16-bit updates of [`csum`] apply to the ICMP checksum as they are. The
//! ICMPv6 checksum also covers the outer addresses (its pseudo-header);
//! ICMP's does not.

use core::{
    mem::size_of,
    ptr::{null_mut, read_unaligned, write_unaligned},
};

use aya_ebpf::programs::XdpContext;
use failover_common::{FlowKey, PROTO_TCP, PROTO_UDP, ReverseKey, csum};

use crate::{
    family::Family,
    nat::End,
    parse::{L3, TcpHdr, UdpHdr, datagram_complete, ptr_at},
};

#[repr(C, packed(2))]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    /// Unused, or the next-hop MTU of "fragmentation needed" / Packet Too
    /// Big.
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
pub struct IcmpError<F: Family> {
    icmp: *mut IcmpHdr,
    inner: *mut F::Hdr,
    inner_proto: u8,
    inner_ports: *mut Ports,
    /// The embedded L4 checksum, or null when the error cut it off (a TCP
    /// header is embedded whole only when the sender kept more than 8 bytes).
    inner_check: *mut u16,
}

/// The ICMP error this frame carries, if it is a destination unreachable,
/// time exceeded (or, for IPv6, Packet Too Big) about an unfragmented TCP
/// or UDP packet whose headers are all in the frame; `None` for anything
/// else.
#[inline(always)]
pub fn parse_error<F: Family>(ctx: &XdpContext, l3: &L3<F>) -> Option<IcmpError<F>> {
    if l3.proto != F::PROTO_ICMP {
        return None;
    }
    let icmp: *mut IcmpHdr = ptr_at(ctx, l3.payload)?;
    // SAFETY: bounds checked by ptr_at.
    if !F::is_icmp_error(unsafe { (*icmp).kind }) {
        return None;
    }
    let inner_offset = l3.payload + ICMP_LEN;
    let (inner, inner_len, inner_proto) = F::embedded(ctx, inner_offset)?;
    if inner_proto != PROTO_TCP && inner_proto != PROTO_UDP {
        return None;
    }
    let l4_offset = inner_offset + inner_len;
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

/// The error's ICMP type.
#[inline(always)]
pub fn kind<F: Family>(error: &IcmpError<F>) -> u8 {
    // SAFETY: bounds proven by parse_error().
    unsafe { (*error.icmp).kind }
}

/// The error's ICMP code.
#[inline(always)]
pub fn code<F: Family>(error: &IcmpError<F>) -> u8 {
    // SAFETY: bounds proven by parse_error().
    unsafe { (*error.icmp).code }
}

/// The backend endpoint the embedded packet was sent to (client →
/// backend, as the data path forwarded it): its `FO_REVERSE` key.
#[inline(always)]
pub fn reverse_key<F: Family>(error: &IcmpError<F>) -> ReverseKey {
    // SAFETY: bounds proven by parse_error().
    let backend_port = unsafe { (*error.inner_ports).dst };
    ReverseKey::new(
        F::FAMILY,
        F::key(F::dst(error.inner)),
        backend_port,
        error.inner_proto,
    )
}

/// The client the error is about (the embedded packet's sender).
#[inline(always)]
pub fn client<F: Family>(error: &IcmpError<F>) -> F::Addr {
    F::src(error.inner)
}

/// The flow the embedded packet is a reply of (VIP:port → client, as the
/// data path sent it): its `FO_FLOWS` key, client → VIP.
#[inline(always)]
pub fn reply_flow_key<F: Family>(error: &IcmpError<F>) -> FlowKey {
    // SAFETY: bounds proven by parse_error().
    let ports = unsafe { read_unaligned(error.inner_ports) };
    FlowKey::new(
        F::FAMILY,
        F::key(F::dst(error.inner)),
        F::key(F::src(error.inner)),
        ports.dst,
        ports.src,
        error.inner_proto,
    )
}

/// Rewrites the error as if the VIP had sent it about the client's packet
/// to the VIP: outer source, embedded destination address and port, and
/// the outer, embedded and ICMP checksums.
#[inline(always)]
pub fn translate_to_client<F: Family>(
    ip: *mut F::Hdr,
    error: &IcmpError<F>,
    vip: F::Addr,
    vip_port: u16,
) {
    let old_src = F::set_addr(ip, End::Source, vip);
    outer_changed::<F>(error, old_src, vip);
    rewrite_embedded(error, End::Destination, vip, vip_port);
}

/// Rewrites the error for the backend that sent the reply it embeds:
/// outer destination, embedded source address and port, and every
/// checksum.
#[inline(always)]
pub fn translate_to_backend<F: Family>(
    ip: *mut F::Hdr,
    error: &IcmpError<F>,
    backend: F::Addr,
    port: u16,
) {
    let old_dst = F::set_addr(ip, End::Destination, backend);
    outer_changed::<F>(error, old_dst, backend);
    rewrite_embedded(error, End::Source, backend, port);
}

/// The ICMP checksum after an outer address changed, where it covers them
/// (ICMPv6's pseudo-header).
#[inline(always)]
fn outer_changed<F: Family>(error: &IcmpError<F>, old: F::Addr, new: F::Addr) {
    if F::ICMP_PSEUDO_HEADER {
        // SAFETY: proven by parse_error().
        unsafe {
            let check = (*error.icmp).check;
            (*error.icmp).check = F::l4_check_after_addr(PROTO_TCP, check, old, new);
        }
    }
}

/// Rewrites one end of the embedded packet to `addr`:`port`, with its IP
/// (IPv4) and L4 checksums and the ICMP checksum that covers them.
#[inline(always)]
fn rewrite_embedded<F: Family>(error: &IcmpError<F>, end: End, addr: F::Addr, port: u16) {
    // SAFETY: proven by parse_error().
    unsafe {
        let inner = error.inner;
        let old_inner_check = F::header_check(inner);
        let old_addr = F::set_addr(inner, end, addr);
        // The ICMP checksum sums the embedded bytes as they are: the
        // address, the embedded header checksum (IPv4), the port.
        let mut icmp_check = (*error.icmp).check;
        icmp_check = F::l4_check_after_addr(PROTO_TCP, icmp_check, old_addr, addr);
        icmp_check = csum::update16(icmp_check, old_inner_check, F::header_check(inner));

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
                F::l4_check_after_addr(error.inner_proto, old, old_addr, addr),
                old_port,
                port,
            );
            write_unaligned(error.inner_check, new);
            icmp_check = csum::update16(icmp_check, old, new);
        }
        (*error.icmp).check = icmp_check;
    }
}
