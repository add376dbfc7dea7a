//! Per-packet cost of the XDP data path, measured with BPF_PROG_TEST_RUN.
//!
//! Each case restores its template frame before every repetition (the
//! `bench_restore` wrapper tail-calls the program under test), so every
//! repetition really takes the path named; one verified run per case checks
//! verdict and output bytes first, and a wrong result fails the benchmark.
//! Floors are measured in the same run through the same harness: the
//! wrapper tail-calling the empty program, and the bare empty and MAC-swap
//! programs in the kernel's repeat loop. Figures are kernel-reported
//! ns/packet; compare ratios, not absolute times (shared, noisy machines).

use std::{net::Ipv4Addr, process::ExitCode};

use aya::{
    Ebpf,
    maps::{Array, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use failover::{BackendSpec, Proto, ServiceSpec};
use failover_tests::{
    lab::{self, *},
    packet::{Frame, TCP_ACK, TCP_SYN},
};

const FRAME_LEN: usize = 64;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

struct Settings {
    rounds: usize,
    repeat: u32,
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    from_backends: bool,
    verdict: u32,
    expected: Vec<u8>,
}

struct Measured {
    name: String,
    samples: Vec<f64>,
}

impl Measured {
    fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
    fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.samples.iter().copied().fold(0.0, f64::max)
    }
}

fn padded(frame: Frame) -> Frame {
    // 14 + 20 + 20 (TCP) or 8 (UDP) header bytes; pad to exactly FRAME_LEN.
    let headers = match frame.l4 {
        failover_tests::packet::L4::Tcp { .. } => 54,
        _ => 42,
    };
    let payload = vec![0x5a; FRAME_LEN - headers];
    frame.with_payload(&payload)
}

fn cases() -> (Vec<(Vec<u8>, bool)>, Vec<Case>) {
    let client = (CLIENT, 41000);
    let syn = padded(Frame::tcp(client, (VIP, 80), TCP_SYN).macs(CLIENT_MAC, CLIENT_SIDE_MAC));
    let ack = padded(Frame::tcp(client, (VIP, 80), TCP_ACK).macs(CLIENT_MAC, CLIENT_SIDE_MAC));
    let reply = padded(
        Frame::tcp((BACKEND_1, 80), client, TCP_ACK).macs(backend_mac(11), BACKEND_SIDE_MAC),
    );
    let udp = padded(Frame::udp((CLIENT, 5000), (VIP, 53)).macs(CLIENT_MAC, CLIENT_SIDE_MAC));
    let other = padded(
        Frame::tcp(client, (Ipv4Addr::new(203, 0, 113, 99), 80), TCP_ACK)
            .macs(CLIENT_MAC, CLIENT_SIDE_MAC),
    );
    // Flows exist before measuring: the established paths are conntrack hits.
    let warmup = vec![(syn.build(), false), (udp.clone().build(), false)];
    let cases = vec![
        Case {
            name: "tcp established (conntrack hit)",
            expected: ack
                .clone()
                .with_dst(BACKEND_1, 80)
                .routed(BACKEND_SIDE_MAC, backend_mac(11))
                .build(),
            frame: ack.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
        },
        Case {
            name: "tcp backend reply (reverse nat)",
            expected: reply
                .clone()
                .with_src(VIP, 80)
                .routed(CLIENT_SIDE_MAC, CLIENT_MAC)
                .build(),
            frame: reply.build(),
            from_backends: true,
            verdict: XDP_REDIRECT,
        },
        Case {
            name: "udp established, port-mapped",
            expected: udp
                .clone()
                .with_dst(BACKEND_2, 5353)
                .routed(BACKEND_SIDE_MAC, backend_mac(12))
                .build(),
            frame: udp.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
        },
        Case {
            name: "non-vip tcp (pass)",
            expected: other.clone().build(),
            frame: other.build(),
            from_backends: false,
            verdict: XDP_PASS,
        },
    ];
    (warmup, cases)
}

fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name).expect(name).try_into().expect(name)
}

fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Xdp {
    ebpf.program(name).expect(name).try_into().expect(name)
}

/// Kernel-reported ns per repetition, `rounds` times.
fn measure(
    lab: &TestRunLab,
    program: &Xdp,
    frame: &[u8],
    ingress: u32,
    settings: &Settings,
) -> Vec<f64> {
    let ctx = lab::xdp_md(frame.len() as u32, ingress);
    lab.ns.run(|| {
        (0..settings.rounds)
            .map(|_| {
                let result = program
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        ctx_in: Some(&ctx),
                        repeat: settings.repeat,
                        ..TestRunOptions::new()
                    })
                    .expect("BPF_PROG_TEST_RUN");
                result.duration.as_nanos() as f64
            })
            .collect()
    })
}

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            rounds: 3,
            repeat: 20_000,
        }
    } else {
        Settings {
            rounds: 11,
            repeat: 200_000,
        }
    };
    failover_tests::require_root();

    let mut lab = TestRunLab::new();
    lab.dataplane
        .add_service(
            ServiceSpec {
                vip: VIP,
                port: 80,
                proto: Proto::Tcp,
            },
            &[BackendSpec::new(BACKEND_1)],
        )
        .expect("tcp service");
    lab.dataplane
        .add_service(
            ServiceSpec {
                vip: VIP,
                port: 53,
                proto: Proto::Udp,
            },
            &[BackendSpec::new(BACKEND_2).port(5353)],
        )
        .expect("udp service");

    let mut harness = Ebpf::load(failover::bench_object()).expect("load bench harness");
    for name in ["bench_restore", "bench_macswap"] {
        xdp_mut(&mut harness, name).load().expect(name);
    }
    let mut template: Array<_, [u64; FRAME_LEN / 8]> =
        Array::try_from(harness.take_map("BENCH_TEMPLATE").expect("template map"))
            .expect("template");
    let mut target = ProgramArray::try_from(harness.take_map("BENCH_TARGET").expect("target map"))
        .expect("target");
    let restore = xdp(&harness, "bench_restore");
    let forwarder = lab.dataplane.program().expect("forwarder");
    let pass = lab.dataplane.pass_program().expect("pass");

    let (warmup, cases) = cases();
    for (frame, from_backends) in &warmup {
        let ingress = if *from_backends {
            lab.backend_ifindex
        } else {
            lab.client_ifindex
        };
        lab.run(frame, ingress);
    }

    let set_template = |template: &mut Array<_, [u64; FRAME_LEN / 8]>, frame: &[u8]| {
        assert_eq!(frame.len(), FRAME_LEN, "bench frames are {FRAME_LEN} bytes");
        let mut words = [0u64; FRAME_LEN / 8];
        for (word, chunk) in words.iter_mut().zip(frame.chunks_exact(8)) {
            *word = u64::from_ne_bytes(chunk.try_into().unwrap());
        }
        template.set(0, words, 0).expect("template write");
    };

    let mut results = Vec::new();
    let floor_frame = cases[0].frame.clone();

    // Floors.
    target
        .set(0, pass.fd().expect("pass fd"), 0)
        .expect("target = pass");
    set_template(&mut template, &floor_frame);
    results.push(Measured {
        name: "floor: restore + empty program".into(),
        samples: measure(&lab, restore, &floor_frame, lab.client_ifindex, &settings),
    });
    results.push(Measured {
        name: "floor: empty program (repeat loop)".into(),
        samples: measure(&lab, pass, &floor_frame, lab.client_ifindex, &settings),
    });
    let macswap = xdp(&harness, "bench_macswap");
    let macswap_check = lab
        .ns
        .run(|| lab::run_xdp(macswap, &floor_frame, lab.client_ifindex));
    assert_eq!(macswap_check.action, XDP_TX, "macswap verdict");
    results.push(Measured {
        name: "floor: mac swap + XDP_TX (repeat loop)".into(),
        samples: measure(&lab, macswap, &floor_frame, lab.client_ifindex, &settings),
    });

    // The data path.
    target
        .set(0, forwarder.fd().expect("forwarder fd"), 0)
        .expect("target = forwarder");
    let mut failed = false;
    for case in &cases {
        let ingress = if case.from_backends {
            lab.backend_ifindex
        } else {
            lab.client_ifindex
        };
        set_template(&mut template, &case.frame);
        let check = lab.ns.run(|| lab::run_xdp(restore, &case.frame, ingress));
        if check.action != case.verdict || check.output != case.expected {
            eprintln!(
                "bench: {}: wrong result (verdict {}, expected {}; output {} expected bytes)",
                case.name,
                check.action,
                case.verdict,
                if check.output == case.expected {
                    "matches"
                } else {
                    "differs from"
                }
            );
            failed = true;
            continue;
        }
        results.push(Measured {
            name: case.name.into(),
            samples: measure(&lab, restore, &case.frame, ingress, &settings),
        });
    }

    let floor = results[0].median();
    let empty = results[1].median();
    println!(
        "\n## XDP data path, ns/packet (BPF_PROG_TEST_RUN, {} rounds x {} repetitions)\n",
        settings.rounds, settings.repeat
    );
    println!("| case | median | min–max | × restore floor | net of floor |");
    println!("|---|---:|---:|---:|---:|");
    for m in &results {
        println!(
            "| {} | {:.1} | {:.1}–{:.1} | {:.2} | {:.1} |",
            m.name,
            m.median(),
            m.min(),
            m.max(),
            m.median() / floor,
            m.median() - floor
        );
    }
    println!("\nempty program (repeat loop) median: {empty:.1} ns");
    maglev_build_times(quick);
    if failed {
        eprintln!("bench: correctness checks failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Userspace Maglev table build time (median of a few builds) per backend count.
fn maglev_build_times(quick: bool) {
    use failover::maglev::{Member, build, is_prime};
    println!(
        "\n## Maglev table build (userspace, median of {} builds)\n",
        if quick { 3 } else { 7 }
    );
    println!("| backends | table size | ms |");
    println!("|---:|---:|---:|");
    for n in [10usize, 100, 1_000, 10_000] {
        // At least ~100 slots per backend for even shares, prime.
        let mut size = (n as u32 * 100).max(failover::maglev::DEFAULT_TABLE_SIZE);
        while !is_prime(size) {
            size += 1;
        }
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                address: Ipv4Addr::from(0xc633_6400u32 + i as u32),
                port: 8080,
                weight: 1,
            })
            .collect();
        let mut samples: Vec<f64> = (0..if quick { 3 } else { 7 })
            .map(|_| {
                let started = std::time::Instant::now();
                let table = build(&members, size);
                assert_eq!(table.len(), size as usize);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        println!("| {n} | {size} | {:.2} |", samples[samples.len() / 2]);
    }
}
