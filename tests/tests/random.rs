//! Randomized data-path test: well-formed and mutated frames through the real
//! program (BPF_PROG_TEST_RUN), checked against invariants that hold for any
//! input. Set FAILOVER_SEED to replay a failure; the seed is in the message.

use std::net::Ipv4Addr;

use failover::{BackendSpec, Proto, ServiceSpec};
use failover_common::stats::reason;
use failover_tests::{
    lab::{self, *},
    packet::{self, Frame, L4},
    rng::Rng,
};

const PACKETS: usize = 12_000;
const XDP_ABORTED: u32 = 0;
const XDP_PASS: u32 = 2;

const TCP_PORT: u16 = 80;
const UDP_PORT: u16 = 53;
const BACKENDS: [Ipv4Addr; 2] = [BACKEND_1, BACKEND_2];
const OTHER_ADDRS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(203, 0, 113, 99),
    Ipv4Addr::new(192, 0, 2, 77),
    Ipv4Addr::new(198, 51, 100, 200),
];

fn service_ports(proto: u8) -> &'static [u16] {
    match proto {
        6 => &[TCP_PORT],
        17 => &[UDP_PORT],
        _ => &[],
    }
}

/// A well-formed frame of one of the shapes the edge host sees.
fn well_formed(rng: &mut Rng) -> (Frame, bool) {
    let client_port = 1024 + rng.below(2000) as u16;
    let flags = rng.pick(&[0x02, 0x10, 0x18, 0x11, 0x04, 0x12, 0x00, 0xff]);
    let (mut frame, from_backends) = match rng.below(6) {
        0 | 1 => (
            Frame::tcp((CLIENT, client_port), (VIP, TCP_PORT), flags),
            false,
        ),
        2 => (Frame::udp((CLIENT, client_port), (VIP, UDP_PORT)), false),
        3 => {
            let backend = rng.pick(&BACKENDS);
            let port = rng.pick(&[TCP_PORT, 5353, 8080]);
            (
                Frame::tcp((backend, port), (CLIENT, client_port), flags),
                true,
            )
        }
        4 => (Frame::udp((BACKEND_2, 5353), (CLIENT, client_port)), true),
        _ => {
            let dst = rng.pick(&OTHER_ADDRS);
            (
                Frame::tcp(
                    (CLIENT, client_port),
                    (dst, rng.pick(&[TCP_PORT, 22])),
                    flags,
                ),
                false,
            )
        }
    };
    frame.ttl = rng.pick(&[0, 1, 2, 64, 255]);
    frame.tos = rng.byte();
    if rng.chance(15) {
        frame.vlan = Some(rng.below(4095) as u16);
    }
    if rng.chance(15) {
        frame.options = (0..rng.below(40))
            .map(|_| rng.pick(&[0u8, 1, 0x94]))
            .collect();
    }
    if rng.chance(10) {
        frame.frag_off = rng.pick(&[0x2000, 0x0001, 0x2010]);
    }
    if let L4::Udp { checksum, .. } = &mut frame.l4
        && rng.chance(10)
    {
        *checksum = false;
    }
    let len = rng.below(200) as usize;
    frame.payload = (0..len).map(|_| rng.byte()).collect();
    frame = if from_backends {
        frame.macs(backend_mac(11), BACKEND_SIDE_MAC)
    } else {
        frame.macs(CLIENT_MAC, CLIENT_SIDE_MAC)
    };
    (frame, from_backends)
}

/// Damages a frame: bit flips, truncation, garbage, header field overwrites.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(bytes.len().min(60) as u64) as usize;
                bytes[i] = rng.byte();
            }
            2 => {
                let keep = 14 + rng.below(bytes.len() as u64 - 13) as usize;
                bytes.truncate(keep.min(bytes.len()));
            }
            3 => bytes.extend((0..rng.below(64)).map(|_| rng.byte())),
            4 if bytes.len() > 18 => bytes[14] = rng.byte(), // version/IHL (untagged)
            _ if bytes.len() > 18 => {
                let v = rng.next() as u16; // total length (untagged)
                bytes[16..18].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
}

/// Whether the program could legitimately rewrite this frame: it is to a
/// service of the lab or from one of its backends.
fn could_match(frame: &[u8]) -> bool {
    let Some(p) = packet::parse(frame) else {
        return false;
    };
    (p.dst == VIP && service_ports(p.proto).contains(&p.dst_port)) || BACKENDS.contains(&p.src)
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

fn check(input: &[u8], result: &RunResult) -> Result<(), String> {
    if result.action == XDP_ABORTED {
        return Err("XDP_ABORTED".into());
    }
    if result.action > 4 {
        return Err(format!("unknown action {}", result.action));
    }
    if result.output == input {
        return Ok(());
    }
    if !could_match(input) {
        return Err("a frame that matches no service or backend was modified".into());
    }
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
    let forward = before.dst == VIP && after.dst != VIP && BACKENDS.contains(&after.dst);
    let reply = BACKENDS.contains(&before.src) && after.src == VIP;
    if !forward && !reply {
        return Err(format!(
            "rewritten to {}→{} which is neither a backend nor from the VIP",
            after.src, after.dst
        ));
    }
    let (ip_in, l4_in) = packet::checksum_residues(input).expect("parsed");
    let (ip_out, l4_out) = packet::checksum_residues(&result.output).expect("parsed");
    if !same_residue(ip_in, ip_out) || !same_residue(l4_in, l4_out) {
        return Err(format!(
            "checksum residues changed: ip {ip_in:#06x}→{ip_out:#06x}, l4 {l4_in:#06x}→{l4_out:#06x}"
        ));
    }
    Ok(())
}

#[test]
fn random_and_mutated_frames_keep_the_invariants() {
    let (mut rng, seed) = Rng::from_env();
    let mut lab = TestRunLab::new();
    lab.dataplane
        .add_service(
            ServiceSpec::new(VIP, TCP_PORT, Proto::Tcp),
            &[
                BackendSpec::new(BACKEND_1),
                BackendSpec::new(BACKEND_2).port(8080),
            ],
        )
        .unwrap();
    lab.dataplane
        .add_service(
            ServiceSpec::new(VIP, UDP_PORT, Proto::Udp),
            &[BackendSpec::new(BACKEND_2).port(5353)],
        )
        .unwrap();

    let program = lab.dataplane.program().unwrap();
    let (client_if, backend_if) = (lab.client_ifindex, lab.backend_ifindex);
    let (failures, rewritten, valid_rewritten) = lab.ns.run(|| {
        let mut failures = Vec::new();
        let (mut rewritten, mut valid_rewritten) = (0, 0);
        for n in 0..PACKETS {
            let (frame, from_backends) = well_formed(&mut rng);
            let mut bytes = frame.build();
            if rng.chance(60) {
                mutate(&mut rng, &mut bytes);
            }
            if bytes.len() < 14 {
                continue;
            }
            let ingress = if from_backends { backend_if } else { client_if };
            let result = lab::run_xdp(program, &bytes, ingress);
            if result.output != bytes {
                rewritten += 1;
                if packet::checksums_valid(&bytes) {
                    valid_rewritten += 1;
                    if !packet::checksums_valid(&result.output) {
                        failures.push(format!(
                            "#{n}: valid frame rewritten with invalid checksums"
                        ));
                    }
                }
            }
            if let Err(problem) = check(&bytes, &result) {
                failures.push(format!("#{n}: {problem}: {}", hex(&bytes)));
            }
        }
        (failures, rewritten, valid_rewritten)
    });
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {PACKETS} frames broke an invariant:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The generator must really exercise the rewrite paths.
    assert!(
        rewritten > PACKETS / 10,
        "seed {seed}: only {rewritten} frames were rewritten"
    );
    assert!(
        valid_rewritten > PACKETS / 20,
        "seed {seed}: only {valid_rewritten} valid frames were rewritten"
    );

    let verdicts = lab.verdicts();
    let reasons = lab.reasons();
    let total_verdicts: u64 = verdicts.iter().map(|c| c.packets).sum();
    let total_outcomes: u64 = reasons[..reason::FIRST_EVENT as usize]
        .iter()
        .map(|c| c.packets)
        .sum();
    assert_eq!(verdicts[XDP_ABORTED as usize].packets, 0, "seed {seed}");
    assert_eq!(
        total_outcomes, total_verdicts,
        "seed {seed}: outcomes must add up to verdicts"
    );
    assert!(verdicts[XDP_PASS as usize].packets > 0);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
