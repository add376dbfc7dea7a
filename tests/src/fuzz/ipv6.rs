//! IPv6 in the fuzzer: frames to the lab's IPv6 services and from their
//! backends (TCP with any flags, UDP, partial checksums), neighbour
//! discovery and other ICMPv6, other addresses, after up to four extension
//! headers (hop-by-hop, routing, destination options, authentication, a
//! fragment now and then), and the invariants of `super` for them: a frame
//! for no service and from no backend passes untouched; a rewrite changes
//! only MACs, hop limit (one less), addresses, ports and the L4 checksum,
//! to a backend of that service on its port or back from the VIP and port
//! of the service that owns the backend; checksums keep their error (a
//! partial one leaves completed).

use std::net::Ipv6Addr;

use failover::{BackendSpec, Proto, ServiceSpec};

use super::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, same_residue, untagged_like};
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
    let matches = could_match(input);
    if result.output == input {
        return match (matches, result.action) {
            (false, XDP_PASS) | (true, XDP_PASS | XDP_DROP) => Ok(()),
            (false, action) => Err(format!(
                "an ipv6 frame for no service and from no backend got action {action}"
            )),
            (true, action) => Err(format!("an untouched ipv6 frame got action {action}")),
        };
    }
    if !matches {
        return Err("an ipv6 frame that matches no service or backend was modified".into());
    }
    if ![XDP_TX, XDP_REDIRECT, XDP_PASS].contains(&result.action) {
        return Err(format!(
            "a rewritten ipv6 frame got action {}",
            result.action
        ));
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
