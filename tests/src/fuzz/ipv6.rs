//! IPv6 in the fuzzer: frames to the lab's IPv6 services and from their
//! backends (TCP with any flags, UDP, partial checksums), neighbour
//! discovery and other ICMPv6, other addresses, after up to four extension
//! headers (hop-by-hop, routing, destination options, authentication, a
//! fragment now and then), and the invariants of `super` for them: a frame
//! for no service and from no backend passes untouched; a rewrite changes
//! only MACs, hop limit (one less), addresses, ports and the L4 checksum,
//! to a backend of that service on its port or back from the VIP and port
//! of the service that owns the backend; checksums keep their error (a
//! partial one leaves completed). ICMPv6 errors about packets through a
//! VIP, from either side (`error`), are translated only as `check_error`
//! allows.

use std::net::Ipv6Addr;

use failover::{BackendSpec, Proto, ServiceSpec};

use super::{XDP_DROP, XDP_PASS, action_verdict, same_residue, untagged_like};
use crate::{
    lab::*,
    packet::{
        Frame6,
        v6::{self, NEXT_AUTH, NEXT_DEST_OPTIONS, NEXT_FRAGMENT, NEXT_HOP_BY_HOP, NEXT_ROUTING},
    },
    rng::Rng,
};

/// An IPv6 service of the fuzzing lab.
struct Service6 {
    vip: Ipv6Addr,
    port: u16,
    proto: u8,
    /// Address and the port it is sent to.
    backends: &'static [(Ipv6Addr, u16)],
}

const SERVICES6: [Service6; 2] = [
    Service6 {
        vip: VIP6,
        port: 80,
        proto: 6,
        backends: &[(BACKEND6_1, 80), (BACKEND6_2, 8080)],
    },
    Service6 {
        vip: VIP6,
        port: 53,
        proto: 17,
        backends: &[(BACKEND6_2, 5353)],
    },
];

const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 0x77);

/// Adds the IPv6 services to the fuzzing lab.
pub(super) fn set_up(lab: &mut TestRunLab) {
    for service in &SERVICES6 {
        let proto = Proto::from_number(service.proto).expect("tcp or udp");
        let backends: Vec<BackendSpec> = service
            .backends
            .iter()
            .map(|(addr, port)| BackendSpec::new(*addr).port(*port))
            .collect();
        lab.dataplane
            .add_service(
                ServiceSpec::new(service.vip, service.port, proto),
                &backends,
            )
            .expect("add an ipv6 fuzzing service");
    }
}

/// An IPv6 frame and whether it arrives from the backends' side.
pub(super) fn frame(rng: &mut Rng) -> (Vec<u8>, bool) {
    if rng.chance(20) {
        return error(rng);
    }
    let client = (rng.pick(&[CLIENT6, OTHER6]), rng.pick(&[40000, 40001, 53]));
    let flags = rng.pick(&[0x02, 0x10, 0x18, 0x11, 0x04, 0x12]);
    let (mut frame, from_backends) = match rng.below(6) {
        0 | 1 => {
            let port = rng.pick(&[80, 81, 8080]);
            (
                Frame6::tcp(client, (rng.pick(&[VIP6, OTHER6]), port), flags),
                false,
            )
        }
        2 => (Frame6::udp(client, (VIP6, rng.pick(&[53, 5353]))), false),
        3 => {
            let (addr, port) = rng.pick(&[(BACKEND6_1, 80), (BACKEND6_2, 8080), (BACKEND6_2, 80)]);
            (Frame6::tcp((addr, port), client, flags), true)
        }
        4 => (
            Frame6::udp((BACKEND6_2, rng.pick(&[5353, 53])), client),
            true,
        ),
        _ => {
            let kind = rng.pick(&[1, 2, 3, 128, 129, 133, 134, 135, 136, 137]);
            (
                Frame6::icmp(client.0, rng.pick(&[VIP6, OTHER6]), kind),
                rng.chance(50),
            )
        }
    };
    frame.hop_limit = rng.pick(&[1, 2, 64, 255]);
    let mut extensions = Vec::new();
    for _ in 0..rng.below(5) {
        extensions.push(rng.pick(&[
            NEXT_HOP_BY_HOP,
            NEXT_ROUTING,
            NEXT_DEST_OPTIONS,
            NEXT_AUTH,
            NEXT_HOP_BY_HOP,
            NEXT_FRAGMENT,
        ]));
    }
    frame.extensions = extensions;
    let payload_len = rng.below(64) as usize;
    frame.payload = (0..payload_len).map(|_| rng.byte()).collect();
    if rng.chance(10) {
        frame = frame.partial();
    }
    let frame = if from_backends {
        frame.macs(backend_mac(11), BACKEND_SIDE_MAC)
    } else {
        frame.macs(CLIENT_MAC, CLIENT_SIDE_MAC)
    };
    (frame.build(), from_backends)
}

/// Whether a frame is IPv6 (untagged or single-tagged).
pub(super) fn is_ipv6(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x86, 0xdd]) => true,
        Some([0x81, 0x00] | [0x88, 0xa8]) => frame.get(16..18) == Some(&[0x86, 0xdd]),
        _ => false,
    }
}

/// A router on the backends' side, and one on the clients'.
const BACKEND_ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0xfe);
const CLIENT_ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 0xfe);

/// An ICMPv6 error: from the backends' side about a client's packet to a
/// backend endpoint, or from the clients' side about a reply from a VIP;
/// mostly of the translated types, embedding a random share of the packet.
fn error(rng: &mut Rng) -> (Vec<u8>, bool) {
    let service = &SERVICES6[rng.below(SERVICES6.len() as u64) as usize];
    let backend = service.backends[rng.below(service.backends.len() as u64) as usize];
    let client = (CLIENT6, rng.pick(&[40000, 40001, 53]));
    let from_backends = rng.chance(50);
    let (mut about, src, dst) = match (from_backends, service.proto) {
        (true, 6) => (
            Frame6::tcp(client, backend, 0x10),
            rng.pick(&[backend.0, BACKEND_ROUTER6]),
            CLIENT6,
        ),
        (true, _) => (
            Frame6::udp(client, backend),
            rng.pick(&[backend.0, BACKEND_ROUTER6]),
            CLIENT6,
        ),
        (false, 6) => (
            Frame6::tcp((service.vip, service.port), client, 0x10),
            CLIENT_ROUTER6,
            service.vip,
        ),
        (false, _) => (
            Frame6::udp((service.vip, service.port), client),
            CLIENT_ROUTER6,
            service.vip,
        ),
    };
    about.hop_limit = 63;
    about.payload = (0..rng.below(64)).map(|_| rng.byte()).collect();
    let dst = if rng.chance(90) { dst } else { OTHER6 };
    let kind = rng.pick(&[1, 1, 2, 3, 4, 137]);
    let any = rng.below(80) as usize;
    let keep = rng.pick(&[44, 48, 60, 1232, any]);
    let error = Frame6::icmp_error(
        src,
        dst,
        (kind, rng.pick(&[0, 4]), rng.next_u64() as u32),
        &about,
        keep,
    );
    let mac = if from_backends {
        (backend_mac(11), BACKEND_SIDE_MAC)
    } else {
        (CLIENT_MAC, CLIENT_SIDE_MAC)
    };
    (error.macs(mac.0, mac.1).build(), from_backends)
}

/// The embedded packet of an ICMPv6 error frame: offsets of the ICMPv6
/// header and of the embedded IPv6 header, its protocol, addresses and
/// ports.
struct Embedded {
    icmp: usize,
    inner: usize,
    proto: u8,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
}

fn embedded(frame: &[u8]) -> Option<Embedded> {
    let p = v6::parse6(frame)?;
    if p.proto != v6::PROTO_ICMPV6 || !matches!(frame.get(p.l4)?, 1..=3) {
        return None;
    }
    let inner = p.l4 + 8;
    let header = frame.get(inner..inner + 44)?;
    if header[0] >> 4 != 6 || !matches!(header[6], 6 | 17) || p.end < inner + 44 {
        return None;
    }
    let address = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&header[at..at + 16]).unwrap());
    let port = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    Some(Embedded {
        icmp: p.l4,
        inner,
        proto: header[6],
        src: (address(8), port(40)),
        dst: (address(24), port(42)),
    })
}

/// Whether the run translated an ICMPv6 error.
pub(super) fn translated_error(input: &[u8], result: &RunResult) -> bool {
    result.output != input && embedded(input).is_some()
}

/// Checks a run whose input is an ICMPv6 error about TCP or UDP; `None`
/// for any other input.
fn check_error(input: &[u8], result: &RunResult) -> Option<Result<(), String>> {
    let before = embedded(input)?;
    let outer = v6::parse6(input)?;
    let owner = owner_of(before.proto, before.dst.0, before.dst.1);
    let of_reply = service_of(before.proto, before.src.0, before.src.1);
    if result.output == input {
        return Some(match result.action {
            XDP_PASS => Ok(()),
            XDP_DROP if owner.is_some() || of_reply.is_some() => Ok(()),
            action => Err(format!("an untouched icmpv6 error got action {action}")),
        });
    }
    if result.action != XDP_PASS || result.output.len() != input.len() {
        return Some(Err(format!(
            "a translated icmpv6 error got action {} and {} bytes (of {})",
            result.action,
            result.output.len(),
            input.len()
        )));
    }
    let (Some(after), Some(outer_after)) = (embedded(&result.output), v6::parse6(&result.output))
    else {
        return Some(Err("a translated icmpv6 error no longer parses".into()));
    };
    let (l3, i) = (outer.l3, before.inner);
    let check = i + 40 + if before.proto == 6 { 16 } else { 6 };
    // The ICMPv6 and embedded L4 checksums always may change; from the
    // backends' side (for the client) the outer source and the embedded
    // destination, from the clients' side (for the backend) the outer
    // destination and the embedded source.
    let mut allowed = vec![before.icmp + 2..before.icmp + 4, check..check + 2];
    let verdict = if let Some(service) = owner.filter(|_| outer_after.dst == outer.dst) {
        allowed.extend([l3 + 8..l3 + 24, i + 24..i + 40, i + 42..i + 44]);
        (outer_after.src == service.vip
            && after.dst == (service.vip, service.port)
            && outer.dst == before.src.0
            && after.src == before.src)
            .then_some(())
            .ok_or("icmpv6 error translated for the wrong client or vip")
    } else if let Some(service) = of_reply {
        allowed.extend([l3 + 24..l3 + 40, i + 8..i + 24, i + 40..i + 42]);
        (outer.dst == service.vip
            && service.backends.contains(&after.src)
            && outer_after.dst == after.src.0
            && after.dst == before.dst)
            .then_some(())
            .ok_or("icmpv6 error about a reply translated for another backend")
    } else {
        Err("an icmpv6 error about nothing of ours was translated")
    };
    let allowed = |b: usize| allowed.iter().any(|range| range.contains(&b));
    if let Some(b) = (0..input.len()).find(|b| input[*b] != result.output[*b] && !allowed(*b)) {
        return Some(Err(format!(
            "icmpv6 error: byte {b} changed outside the translated fields"
        )));
    }
    if let Err(problem) = verdict {
        return Some(Err(problem.into()));
    }
    let (Some(r_in), Some(r_out)) = (v6::residue6(input), v6::residue6(&result.output)) else {
        return Some(Err("icmpv6 error: no checksum".into()));
    };
    Some(if same_residue(r_in, r_out) {
        Ok(())
    } else {
        Err(format!(
            "icmpv6 checksum residue changed: {r_in:#06x}→{r_out:#06x}"
        ))
    })
}

fn service_of(proto: u8, dst: Ipv6Addr, port: u16) -> Option<&'static Service6> {
    SERVICES6
        .iter()
        .find(|s| s.proto == proto && s.vip == dst && s.port == port)
}

fn owner_of(proto: u8, addr: Ipv6Addr, port: u16) -> Option<&'static Service6> {
    SERVICES6
        .iter()
        .find(|s| s.proto == proto && s.backends.contains(&(addr, port)))
}

fn could_match(frame: &[u8]) -> bool {
    v6::parse6(frame).is_some_and(|p| {
        service_of(p.proto, p.dst, p.dst_port).is_some()
            || owner_of(p.proto, p.src, p.src_port).is_some()
    })
}

/// Checks one run of an IPv6 frame against the invariants.
pub(super) fn check(input: &[u8], result: &RunResult) -> Result<(), String> {
    if let Some(verdict) = check_error(input, result) {
        return verdict;
    }
    if let Some(verdict) = action_verdict(input, result, could_match(input), "ipv6 frame") {
        return verdict;
    }
    let input = &*untagged_like(input, &result.output);
    if result.output.len() != input.len() {
        return Err("ipv6: length changed".into());
    }
    let (Some(before), Some(after)) = (v6::parse6(input), v6::parse6(&result.output)) else {
        return Err("rewritten ipv6 frame no longer parses".into());
    };
    let (l3, l4) = (before.l3, before.l4);
    let check = if before.proto == 6 { l4 + 16 } else { l4 + 6 };
    let allowed = |i: usize| {
        i < 12
            || i == l3 + 7
            || (l3 + 8..l3 + 40).contains(&i)
            || (l4..l4 + 4).contains(&i)
            || i == check
            || i == check + 1
    };
    if let Some(i) = (0..input.len()).find(|i| input[*i] != result.output[*i] && !allowed(*i)) {
        return Err(format!(
            "ipv6: byte {i} changed outside the rewritten fields"
        ));
    }
    if after.hop_limit.wrapping_add(1) != before.hop_limit && after.hop_limit != before.hop_limit {
        return Err(format!(
            "hop limit {} became {}",
            before.hop_limit, after.hop_limit
        ));
    }
    let forward = service_of(before.proto, before.dst, before.dst_port).filter(|service| {
        after.src == before.src
            && after.src_port == before.src_port
            && service.backends.contains(&(after.dst, after.dst_port))
    });
    let reply = owner_of(before.proto, before.src, before.src_port).filter(|service| {
        after.src == service.vip
            && after.src_port == service.port
            && after.dst == before.dst
            && after.dst_port == before.dst_port
    });
    if forward.is_none() && reply.is_none() {
        return Err(format!(
            "rewritten [{}]:{}→[{}]:{} to [{}]:{}→[{}]:{}: neither to a backend of that service \
             nor a reply from the VIP of the service owning the backend",
            before.src,
            before.src_port,
            before.dst,
            before.dst_port,
            after.src,
            after.src_port,
            after.dst,
            after.dst_port
        ));
    }
    let (Some(residue_in), Some(residue_out)) = (v6::residue6(input), v6::residue6(&result.output))
    else {
        return Err("ipv6: no checksum to compare".into());
    };
    if v6::looks_partial6(input) && residue_in != 0xffff {
        return if residue_out == 0xffff {
            Ok(())
        } else {
            Err(format!(
                "ipv6: a partial checksum was not completed: residue {residue_out:#06x}"
            ))
        };
    }
    if !same_residue(residue_in, residue_out) {
        return Err(format!(
            "ipv6: checksum residue changed: {residue_in:#06x}→{residue_out:#06x}"
        ));
    }
    Ok(())
}
