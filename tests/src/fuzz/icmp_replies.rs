//! ICMP errors from the clients' side in the fuzzer: about a reply as the
//! edge host sent it (a service's VIP:port → the client), addressed to the
//! VIP or elsewhere, and the invariants of their translation for the
//! flow's backend.

use std::net::Ipv4Addr;

use super::{SERVICES, service_of};
use crate::{
    lab::{CLIENT, RunResult},
    packet::{self, Frame, IcmpErrorFrame, TCP_ACK},
    rng::Rng,
};

/// A router on the clients' side.
const CLIENT_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

/// An ICMP error about a reply of a fuzzing service to the client's
/// `client_port` (tracked or not).
pub(super) fn error_frame(rng: &mut Rng, client_port: u16) -> Frame {
    let service = &SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let vip = (service.vip, service.port);
    let about = if service.proto == 6 {
        Frame::tcp(vip, (CLIENT, client_port), TCP_ACK)
    } else {
        Frame::udp(vip, (CLIENT, client_port))
    };
    let src = rng.pick(&[CLIENT, CLIENT_ROUTER]);
    super::icmp::random_error(rng, src, service.vip, about)
}

/// Whether the run translated an error about a reply (its outer
/// destination changed).
pub(super) fn translated(input: &[u8], result: &RunResult) -> bool {
    result.output != input
        && packet::parse_icmp_error(input).is_some_and(|before| {
            about_a_reply(&before)
                && packet::parse_icmp_error(&result.output).is_some_and(|a| a.dst != before.dst)
        })
}

/// Whether the error is about a reply of a service (from its VIP:port).
pub(super) fn about_a_reply(before: &IcmpErrorFrame) -> bool {
    let (vip, port) = before.inner_src;
    service_of(before.inner_proto, vip, port).is_some()
}

/// A translated error about a reply, handed to the stack: only the
/// translated fields changed, to a backend endpoint of the service whose
/// VIP:port sent the reply, the client and the sender of the error kept;
/// every checksum keeps its error.
pub(super) fn translation(
    input: &[u8],
    result: &RunResult,
    before: &IcmpErrorFrame,
    after: &IcmpErrorFrame,
) -> Result<(), String> {
    super::icmp::passed_changing_only(
        input,
        result,
        &allowed_changes(before),
        "icmp error about a reply",
    )?;
    let (vip, port) = before.inner_src;
    let service = service_of(before.inner_proto, vip, port).expect("about a reply");
    let to_backend = service
        .backends
        .iter()
        .any(|(a, p)| after.dst == *a && after.inner_src == (*a, service.backend_port(*p)));
    if before.dst != vip || !to_backend {
        return Err(format!(
            "icmp error to {} about a reply from {vip}:{port} became one to {} about {}:{}: \
             not for a backend of that service on its port",
            before.dst, after.dst, after.inner_src.0, after.inner_src.1
        ));
    }
    if after.src != before.src || after.inner_dst != before.inner_dst {
        return Err("a translated icmp error about a reply changed its sender or client".into());
    }
    super::icmp::same_residues(input, result, before, after)
}

/// Offsets a translation may change: the outer checksum and destination,
/// the ICMP checksum, the embedded checksum, source address and port, and
/// the embedded transport checksum.
fn allowed_changes(p: &IcmpErrorFrame) -> Vec<usize> {
    let mut allowed = vec![p.l3 + 10, p.l3 + 11];
    allowed.extend(p.l3 + 16..p.l3 + 20);
    allowed.extend([p.icmp + 2, p.icmp + 3]);
    allowed.extend([p.inner + 10, p.inner + 11]);
    allowed.extend(p.inner + 12..p.inner + 16);
    let l4 = p.inner_l4();
    allowed.extend([l4, l4 + 1]);
    let check = if p.inner_proto == 6 { l4 + 16 } else { l4 + 6 };
    allowed.extend([check, check + 1]);
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_errors_parse_and_are_about_replies() {
        let mut rng = Rng(7);
        for _ in 0..200 {
            let frame = error_frame(&mut rng, 2000).build();
            if let Some(parsed) = packet::parse_icmp_error(&frame) {
                assert!(about_a_reply(&parsed));
            }
        }
    }
}
