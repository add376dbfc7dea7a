//! Checking a frame's checksums by full recomputation.

use std::net::Ipv4Addr;

use failover_common::csum::sum_be_words;

use super::parse;

pub(super) fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: usize) -> u64 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
    sum_be_words(&pseudo, 0)
}

/// The folded one's-complement sum of `bytes` (0xffff: a valid checksum
/// is among them).
pub fn residue(bytes: &[u8]) -> u16 {
    failover_common::csum::fold(sum_be_words(bytes, 0))
}

/// How far a frame's IPv4 and L4 checksums are from valid, as the folded
/// one's-complement sum over the covered bytes (0xffff means valid). Returns
/// (ip, l4); for a UDP zero checksum the L4 residue is reported as valid.
pub fn checksum_residues(frame: &[u8]) -> Option<(u16, u16)> {
    let p = parse(frame)?;
    let ip = &frame[p.l3..p.l3 + p.ihl];
    let ip_residue = failover_common::csum::fold(sum_be_words(ip, 0));
    let l4 = &frame[p.l3 + p.ihl..p.l3 + p.tot_len];
    if p.proto == 17 && l4[6..8] == [0, 0] {
        return Some((ip_residue, 0xffff));
    }
    let pseudo = pseudo_header_sum(p.src, p.dst, p.proto, l4.len());
    let l4_residue = failover_common::csum::fold(sum_be_words(l4, pseudo));
    Some((ip_residue, l4_residue))
}

/// Whether the frame's L4 checksum looks partial: it equals the
/// pseudo-header sum, as a local sender with transmit offload leaves it.
pub fn looks_partial(frame: &[u8]) -> bool {
    let Some(p) = parse(frame) else {
        return false;
    };
    let l4 = &frame[p.l3 + p.ihl..p.l3 + p.tot_len];
    let field = if p.proto == 6 { &l4[16..18] } else { &l4[6..8] };
    if field == [0, 0] || (p.proto == 6 && l4.len() < 20) {
        return false;
    }
    let pseudo = pseudo_header_sum(p.src, p.dst, p.proto, l4.len());
    field == failover_common::csum::fold(pseudo).to_be_bytes()
}

/// Whether every checksum of the frame (IPv4 or IPv6) is valid by full
/// recomputation.
pub fn checksums_valid(frame: &[u8]) -> bool {
    if let Some(valid) = super::v6::checksum_valid6(frame) {
        return valid;
    }
    checksum_residues(frame) == Some((0xffff, 0xffff))
}
