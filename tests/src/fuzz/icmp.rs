//! ICMP errors in the fuzzer: frames from the backends' side about packets
//! a client may have sent through a VIP (tracked or not), and the
//! invariants of their translation.

use std::net::Ipv4Addr;

use super::{OTHER_ADDRS, SERVICES, XDP_DROP, XDP_PASS, icmp_replies, owners_of};
use crate::{
    lab::{CLIENT, RunResult},
    packet::{self, Frame, IcmpErrorFrame, TCP_SYN},
    rng::Rng,
};

/// A router between the edge host and the backends.
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);

/// An ICMP error about a packet from the client's `client_port` to a
/// backend endpoint of a fuzzing service, as the edge host forwarded it.
pub(super) fn error_frame(rng: &mut Rng, client_port: u16) -> Frame {
    let service = &SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let (addr, port) = service.backends[rng.below(service.backends.len() as u64) as usize];
    let backend = (addr, service.backend_port(port));
    let mut about = if service.proto == 6 {
        Frame::tcp((CLIENT, client_port), backend, TCP_SYN)
    } else {
        Frame::udp((CLIENT, client_port), backend)
    };
    about.ttl = 63;
    let src = rng.pick(&[addr, ROUTER]);
    random_error(rng, src, CLIENT, about)
}

/// An ICMP error from `src` about `about` (given a random payload),
/// mostly to `to`: mostly of the types that are translated (redirects and
/// parameter problems are not), embedding a random share of `about`.
pub(super) fn random_error(rng: &mut Rng, src: Ipv4Addr, to: Ipv4Addr, mut about: Frame) -> Frame {
    about.payload = (0..rng.below(64)).map(|_| rng.byte()).collect();
    let dst = if rng.chance(90) {
        to
    } else {
        rng.pick(&OTHER_ADDRS)
    };
    let kind = rng.pick(&[3, 3, 3, 11, 5, 12]);
    let code = rng.pick(&[0, 1, 3, 4]);
    let any = rng.below(80) as usize;
    let keep = rng.pick(&[28, 40, 48, usize::MAX, any]);
    Frame::icmp_error(src, dst, (kind, code, rng.next_u64() as u32), &about, keep)
}

/// Checks a run whose input is an ICMP error about a TCP or UDP packet;
/// `None` for any other input.
pub(super) fn check(input: &[u8], result: &RunResult) -> Option<Result<(), String>> {
    let before = packet::parse_icmp_error(input)?;
    let (proto, (addr, port)) = (before.inner_proto, before.inner_dst);
    let about_a_backend = owners_of(proto, addr, port).next().is_some();
    let about_a_reply = icmp_replies::about_a_reply(&before);
    if result.output == input {
        return Some(match result.action {
            XDP_PASS => Ok(()),
            // From the wrong side, or past the service's rate.
            XDP_DROP if about_a_backend || about_a_reply => Ok(()),
            action => Err(format!("an untouched icmp error got action {action}")),
        });
    }
    if input.len() != result.output.len() {
        return Some(Err("icmp error: length changed".into()));
    }
    let Some(after) = packet::parse_icmp_error(&result.output) else {
        return Some(Err("a translated icmp error no longer parses".into()));
    };
    if about_a_reply && after.dst != before.dst {
        return Some(icmp_replies::translation(input, result, &before, &after));
    }
    Some(translation(input, result, &before, &after))
}

/// A translated error, handed to the stack: only the translated fields
/// changed, to the VIP and port of a service owning the embedded backend
/// endpoint, for the client that sent the embedded packet; every checksum
/// keeps its error.
fn translation(
    input: &[u8],
    result: &RunResult,
    before: &IcmpErrorFrame,
    after: &IcmpErrorFrame,
) -> Result<(), String> {
    passed_changing_only(input, result, &allowed_changes(before), "icmp error")?;
    let (addr, port) = before.inner_dst;
    let owner = owners_of(before.inner_proto, addr, port)
        .find(|s| after.src == s.vip && after.inner_dst == (s.vip, s.port));
    if owner.is_none() {
        return Err(format!(
            "icmp error about {}:{} became one from {} about {}:{}: not the VIP and port of a \
             service owning that backend",
            addr, port, after.src, after.inner_dst.0, after.inner_dst.1
        ));
    }
    if after.dst != before.inner_src.0 || after.inner_src != before.inner_src {
        return Err("a translated icmp error is not for the embedded packet's sender".into());
    }
    same_residues(input, result, before, after)
}

/// A translation is handed to the stack and changes no byte but those
/// `allowed`.
pub(super) fn passed_changing_only(
    input: &[u8],
    result: &RunResult,
    allowed: &[usize],
    what: &str,
) -> Result<(), String> {
    if result.action != XDP_PASS {
        return Err(format!("a translated {what} got action {}", result.action));
    }
    match (0..input.len()).find(|i| input[*i] != result.output[*i] && !allowed.contains(i)) {
        Some(i) => Err(format!(
            "{what}: byte {i} changed outside the translated fields"
        )),
        None => Ok(()),
    }
}

/// Every checksum of a translated error keeps the error it had.
pub(super) fn same_residues(
    input: &[u8],
    result: &RunResult,
    before: &IcmpErrorFrame,
    after: &IcmpErrorFrame,
) -> Result<(), String> {
    let residues = |frame: &[u8], p: &IcmpErrorFrame| {
        (
            packet::residue(&frame[p.l3..p.l3 + p.ihl]),
            packet::residue(&frame[p.icmp..p.end]),
            packet::residue(&frame[p.inner..p.inner + p.inner_ihl]),
        )
    };
    let (ip_in, icmp_in, inner_in) = residues(input, before);
    let (ip_out, icmp_out, inner_out) = residues(&result.output, after);
    let same = |a: u16, b: u16| a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0);
    if !same(ip_in, ip_out) || !same(icmp_in, icmp_out) || !same(inner_in, inner_out) {
        return Err(format!(
            "icmp error: checksum residues changed: ip {ip_in:#06x}→{ip_out:#06x}, icmp \
             {icmp_in:#06x}→{icmp_out:#06x}, embedded ip {inner_in:#06x}→{inner_out:#06x}"
        ));
    }
    Ok(())
}

/// Offsets a translation may change: the outer checksum and source, the
/// ICMP checksum, the embedded checksum, destination address and port, and
/// the embedded transport checksum (the stack routes it: MACs and TTL stay).
fn allowed_changes(p: &IcmpErrorFrame) -> Vec<usize> {
    let mut allowed = vec![p.l3 + 10, p.l3 + 11];
    allowed.extend(p.l3 + 12..p.l3 + 16);
    allowed.extend([p.icmp + 2, p.icmp + 3]);
    allowed.extend([p.inner + 10, p.inner + 11]);
    allowed.extend(p.inner + 16..p.inner + 20);
    let l4 = p.inner_l4();
    allowed.extend([l4 + 2, l4 + 3]);
    let check = if p.inner_proto == 6 { l4 + 16 } else { l4 + 6 };
    allowed.extend([check, check + 1]);
    allowed
}
