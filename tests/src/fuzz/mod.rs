//! Packet fuzzing of the real program (BPF_PROG_TEST_RUN in the fixture lab):
//! well-formed frames of every shape the program parses — Ethernet, 802.1Q
//! and 802.1ad tags, IPv4 with options and fragments, TCP with any flags,
//! UDP with and without checksums, ICMP errors about packets sent through a
//! VIP (tracked or not), other protocols and ether types, IPv6 to and from
//! its services behind extension headers (`ipv6`) — and
//! mutations of them (bit flips, truncations, garbage, wrong lengths), each
//! checked against invariants that hold for any input:
//!
//! - never aborted, never an unknown action;
//! - a frame that is neither to a service nor from one of its backends
//!   leaves untouched and goes to the stack (never dropped or reflected);
//! - a frame to a service, left untouched, is passed or dropped;
//! - a rewritten frame keeps its length and changes only MACs, TTL (one
//!   less), addresses, ports and checksums; a frame to a service goes to a
//!   backend *of that service* on that backend's port, a reply comes from
//!   the VIP and port of a service that owns that backend endpoint;
//! - an ICMP error is translated only for the client that sent the packet
//!   it embeds, from the VIP and about the VIP and port of a service owning
//!   the embedded backend endpoint, changing nothing else (see `icmp`);
//! - checksums keep exactly their error (valid ones stay valid), but for
//!   a checksum that is partial (the pseudo-header sum a local sender with
//!   offload leaves), which leaves completed;
//! - outcomes add up to verdicts.
//!
//! `tests/tests/random.rs` runs 100,000 frames in the test suite;
//! `cargo xtask fuzz [--packets N]` runs a million or more.

mod answers;
mod frames;
mod icmp;
mod icmp_replies;
mod ipv6;

use failover_common::stats::action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX};
use std::{
    borrow::Cow,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use failover::{BackendSpec, Proto, ServiceSpec};
use failover_common::stats::reason;

use crate::{
    lab::{self, *},
    packet,
    rng::Rng,
};

/// A second VIP with services of its own.
pub const VIP_2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

/// A service of the fuzzing lab: where clients send, and its backends
/// (address, port they are sent to; `None`: the service port).
struct FuzzService {
    vip: Ipv4Addr,
    port: u16,
    proto: u8,
    backends: &'static [(Ipv4Addr, Option<u16>)],
}

impl FuzzService {
    /// The port a backend of this service is sent to.
    fn backend_port(&self, port: Option<u16>) -> u16 {
        port.unwrap_or(self.port)
    }
}

/// Services with overlapping backend hosts but distinct endpoints, so that
/// sending a flow to another service's backend shows.
const SERVICES: [FuzzService; 4] = [
    FuzzService {
        vip: VIP,
        port: 80,
        proto: 6,
        backends: &[(BACKEND_1, None), (BACKEND_2, Some(8080))],
    },
    FuzzService {
        vip: VIP,
        port: 53,
        proto: 17,
        backends: &[(BACKEND_2, Some(5353))],
    },
    FuzzService {
        vip: VIP_2,
        port: 81,
        proto: 6,
        backends: &[(BACKEND_3, Some(8181)), (BACKEND_1, Some(8181))],
    },
    FuzzService {
        vip: VIP_2,
        port: 5353,
        proto: 17,
        backends: &[(BACKEND_1, Some(9999))],
    },
];

const OTHER_ADDRS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(203, 0, 113, 99),
    Ipv4Addr::new(192, 0, 2, 77),
    Ipv4Addr::new(198, 51, 100, 200),
];

/// Adds the fuzzing services to a fresh lab.
pub fn set_up(lab: &mut TestRunLab) {
    for service in &SERVICES {
        let proto = Proto::from_number(service.proto).expect("tcp or udp");
        let backends: Vec<BackendSpec> = service
            .backends
            .iter()
            .map(|(addr, port)| {
                let spec = BackendSpec::new(*addr);
                match port {
                    Some(port) => spec.port(*port),
                    None => spec,
                }
            })
            .collect();
        lab.dataplane
            .add_service(
                ServiceSpec::new(service.vip, service.port, proto),
                &backends,
            )
            .expect("add a fuzzing service");
    }
    ipv6::set_up(lab);
}

fn service_of(proto: u8, dst: Ipv4Addr, port: u16) -> Option<&'static FuzzService> {
    SERVICES
        .iter()
        .find(|s| s.proto == proto && s.vip == dst && s.port == port)
}

/// Services that own the backend endpoint `(addr, port)` for `proto`.
fn owners_of(proto: u8, addr: Ipv4Addr, port: u16) -> impl Iterator<Item = &'static FuzzService> {
    SERVICES.iter().filter(move |s| {
        s.proto == proto
            && s.backends
                .iter()
                .any(|(a, p)| *a == addr && s.backend_port(*p) == port)
    })
}

/// Whether the program may act on this frame at all: it is to a service
/// of the lab or from one of its backend endpoints.
fn could_match(frame: &[u8]) -> bool {
    let Some(p) = packet::parse(frame) else {
        return false;
    };
    service_of(p.proto, p.dst, p.dst_port).is_some()
        || owners_of(p.proto, p.src, p.src_port).next().is_some()
}

/// Offsets a rewrite may change: MACs, TTL, IP checksum, addresses, ports,
/// L4 checksum.
fn allowed_changes(p: &packet::Parsed) -> Vec<usize> {
    let mut allowed: Vec<usize> = (0..12).collect();
    let l3 = p.l3;
    allowed.extend([l3 + 8, l3 + 10, l3 + 11]);
    allowed.extend(l3 + 12..l3 + 20);
    let l4 = l3 + p.ihl;
    allowed.extend(l4..l4 + 4);
    if p.proto == 6 {
        allowed.extend([l4 + 16, l4 + 17]);
    } else {
        allowed.extend([l4 + 6, l4 + 7]);
    }
    allowed
}

fn same_residue(a: u16, b: u16) -> bool {
    // One's complement has two zeros.
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

/// A tagged frame sent on leaves without its tag: the input to compare the
/// output with is then the same frame untagged.
fn untagged_like<'a>(input: &'a [u8], output: &[u8]) -> Cow<'a, [u8]> {
    if output.len() + 4 == input.len()
        && matches!(input[12..14], [0x81, 0x00] | [0x88, 0xa8])
        && output[12..14] == input[16..18]
    {
        Cow::Owned([&input[..12], &input[16..]].concat())
    } else {
        Cow::Borrowed(input)
    }
}

/// Checks one run against the invariants.
pub fn check(input: &[u8], result: &RunResult) -> Result<(), String> {
    if result.action == XDP_ABORTED {
        return Err("XDP_ABORTED".into());
    }
    if result.action > XDP_REDIRECT {
        return Err(format!("unknown action {}", result.action));
    }
    if ipv6::is_ipv6(input) {
        return ipv6::check(input, result);
    }
    if answers::is_answer(result) {
        return answers::check(input, result);
    }
    if let Some(verdict) = icmp::check(input, result) {
        return verdict;
    }
    if let Some(verdict) = action_verdict(input, result, could_match(input), "frame") {
        return verdict;
    }
    let input = &*untagged_like(input, &result.output);
    if result.output.len() != input.len() {
        return Err("length changed".into());
    }
    let (Some(before), Some(after)) = (packet::parse(input), packet::parse(&result.output)) else {
        return Err("rewritten frame no longer parses".into());
    };
    let allowed = allowed_changes(&before);
    if let Some(i) =
        (0..input.len()).find(|i| input[*i] != result.output[*i] && !allowed.contains(i))
    {
        return Err(format!("byte {i} changed outside the rewritten fields"));
    }
    if after.ttl.wrapping_add(1) != before.ttl && after.ttl != before.ttl {
        return Err(format!("ttl {} became {}", before.ttl, after.ttl));
    }
    let forward = service_of(before.proto, before.dst, before.dst_port).filter(|service| {
        after.src == before.src
            && after.src_port == before.src_port
            && service
                .backends
                .iter()
                .any(|(a, p)| *a == after.dst && service.backend_port(*p) == after.dst_port)
    });
    let reply = owners_of(before.proto, before.src, before.src_port).find(|service| {
        after.src == service.vip
            && after.src_port == service.port
            && after.dst == before.dst
            && after.dst_port == before.dst_port
    });
    if forward.is_none() && reply.is_none() {
        return Err(format!(
            "rewritten {}:{}→{}:{} to {}:{}→{}:{}: neither to a backend of that service on its port \
             nor a reply from the VIP and port of a service owning the backend",
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
    let (ip_in, l4_in) = packet::checksum_residues(input).expect("parsed");
    let (ip_out, l4_out) = packet::checksum_residues(&result.output).expect("parsed");
    if packet::looks_partial(input) && l4_in != 0xffff {
        if !same_residue(ip_in, ip_out) || l4_out != 0xffff {
            return Err(format!(
                "a partial checksum was not completed: l4 residue {l4_out:#06x}"
            ));
        }
        return Ok(());
    }
    if !same_residue(ip_in, ip_out) || !same_residue(l4_in, l4_out) {
        return Err(format!(
            "checksum residues changed: ip {ip_in:#06x}→{ip_out:#06x}, l4 {l4_in:#06x}→{l4_out:#06x}"
        ));
    }
    Ok(())
}

/// The invariants on a frame's action, for both families (`what` names
/// the frame in messages): an untouched frame for no service and from no
/// backend passes, one that may be ours passes or drops (`Some`: the
/// verdict); a rewritten one must be ours, sent on or passed (`None`: go on
/// checking the rewrite).
fn action_verdict(
    input: &[u8],
    result: &RunResult,
    matches: bool,
    what: &str,
) -> Option<Result<(), String>> {
    if result.output == input {
        return Some(match (matches, result.action) {
            (false, XDP_PASS) | (true, XDP_PASS | XDP_DROP) => Ok(()),
            (false, action) => Err(format!(
                "a {what} for no service and from no backend got action {action} (must pass to the stack)"
            )),
            (true, action) => Err(format!("an untouched {what} got action {action}")),
        });
    }
    if !matches {
        return Some(Err(format!(
            "a {what} that matches no service or backend was modified"
        )));
    }
    if ![XDP_TX, XDP_REDIRECT, XDP_PASS].contains(&result.action) {
        return Some(Err(format!(
            "a rewritten {what} got action {}",
            result.action
        )));
    }
    None
}

/// What a fuzzing run found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub packets: usize,
    pub failures: Vec<String>,
    pub rewritten: usize,
    pub valid_rewritten: usize,
    /// ICMP errors translated, either way (`pass_icmp_translated`).
    pub icmp_translated: u64,
    /// Of those, errors about replies translated for a backend.
    pub icmp_replies_translated: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn packets_per_second(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `packets` frames from `rng` through a lab set up with [`set_up`].
pub fn run(lab: &TestRunLab, rng: &mut Rng, seed: u64, packets: usize) -> Report {
    let program = lab.dataplane.program().expect("program");
    let (client_if, backend_if) = (lab.client_ifindex, lab.backend_ifindex);
    let started = Instant::now();
    let (failures, rewritten, valid_rewritten, replies, (rewritten6, errors6)) = lab.ns.run(|| {
        let mut failures = Vec::new();
        let (mut rewritten, mut valid_rewritten, mut replies) = (0, 0, 0);
        let (mut rewritten6, mut errors6) = (0, 0);
        for n in 0..packets {
            let (mut bytes, from_backends) = if rng.chance(15) {
                ipv6::frame(rng)
            } else {
                let (frame, from_backends) = frames::well_formed(rng);
                (frame.build(), from_backends)
            };
            frames::retag(rng, &mut bytes);
            if rng.chance(60) {
                frames::mutate(rng, &mut bytes);
            }
            if bytes.len() < 14 {
                continue;
            }
            let ingress = if from_backends { backend_if } else { client_if };
            let result = lab::run_xdp(program, &bytes, ingress);
            replies += u64::from(icmp_replies::translated(&bytes, &result));
            errors6 += usize::from(ipv6::translated_error(&bytes, &result));
            // Answers (ICMP) are checked by `check`.
            if result.output != bytes && !answers::is_answer(&result) {
                rewritten += 1;
                rewritten6 += usize::from(ipv6::is_ipv6(&bytes));
                if packet::checksums_valid(&bytes) {
                    valid_rewritten += 1;
                    if !packet::checksums_valid(&result.output) {
                        failures.push(format!(
                            "#{n}: valid frame rewritten with invalid checksums"
                        ));
                    }
                }
            }
            if let Err(problem) = check(&bytes, &result)
                && failures.len() < 100
            {
                failures.push(format!("#{n}: {problem}: {}", hex(&bytes)));
            }
        }
        (
            failures,
            rewritten,
            valid_rewritten,
            replies,
            (rewritten6, errors6),
        )
    });
    let elapsed = started.elapsed();
    let mut report = Report {
        seed,
        packets,
        failures,
        rewritten,
        valid_rewritten,
        icmp_translated: 0,
        icmp_replies_translated: replies,
        elapsed,
    };
    let verdicts = lab.verdicts();
    let reasons = lab.reasons();
    let total_verdicts: u64 = verdicts.iter().map(|c| c.packets).sum();
    let total_outcomes: u64 = reasons[..reason::FIRST_EVENT as usize]
        .iter()
        .map(|c| c.packets)
        .sum();
    if total_outcomes != total_verdicts {
        report.failures.push(format!(
            "outcomes ({total_outcomes}) do not add up to verdicts ({total_verdicts})"
        ));
    }
    // The generator must really exercise the rewrite paths.
    if rewritten < packets / 10 || valid_rewritten < packets / 20 {
        report.failures.push(format!(
            "only {rewritten} frames were rewritten ({valid_rewritten} valid): the generator lost its aim"
        ));
    }
    if rewritten6 < packets / 100 || errors6 < packets / 1000 {
        report.failures.push(format!(
            "only {rewritten6} ipv6 frames were rewritten, {errors6} icmpv6 errors translated: \
             the generator lost its aim"
        ));
    }
    let translated = reasons[reason::PASS_ICMP_TRANSLATED as usize].packets;
    if translated < (packets / 1000) as u64 {
        report.failures.push(format!(
            "only {translated} icmp errors were translated: the generator lost its aim"
        ));
    }
    if replies < (packets / 1000) as u64 {
        report.failures.push(format!(
            "only {replies} icmp errors about replies were translated: the generator lost its aim"
        ));
    }
    report.icmp_translated = translated;
    report
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
