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
    let mut report = format!(
        "# failover benchmarks\n\nGenerated by `cargo xtask bench{}` on {} ({}). Figures are medians over \
         rounds with the spread; compare ratios, not absolute times (shared, noisy machines).\n",
        if quick { " --quick" } else { "" },
        failover::events::rfc3339(std::time::SystemTime::now()),
        machine()
    );
    report += &format!(
        "\n## XDP data path, ns/packet (BPF_PROG_TEST_RUN, {} rounds x {} repetitions)\n\n\
         Each case restores its frame before every repetition and tail-calls the program; \
         its verdict and output bytes are checked first.\n\n",
        settings.rounds, settings.repeat
    );
    report +=
        "| case | median | min–max | × restore floor | net of floor |\n|---|---:|---:|---:|---:|\n";
    let mut cases_json = Vec::new();
    for m in &results {
        report += &format!(
            "| {} | {:.1} | {:.1}–{:.1} | {:.2} | {:.1} |\n",
            m.name,
            m.median(),
            m.min(),
            m.max(),
            m.median() / floor,
            m.median() - floor
        );
        cases_json.push(serde_json::json!({
            "case": m.name, "median_ns": m.median(), "min_ns": m.min(), "max_ns": m.max(),
            "ratio_to_restore_floor": m.median() / floor, "samples_ns": m.samples,
        }));
    }
    report += &format!("\nEmpty program in the kernel repeat loop: {empty:.1} ns.\n");
    let (maglev_md, maglev_json) = maglev_build_times(quick);
    report += &maglev_md;
    print!("{report}");
    let json = serde_json::json!({
        "generated": failover::events::rfc3339(std::time::SystemTime::now()),
        "machine": machine(),
        "quick": quick,
        "datapath": {"rounds": settings.rounds, "repeat": settings.repeat, "cases": cases_json},
        "maglev_build": maglev_json,
    });
    // A full run regenerates the committed report; a quick one stays in target/.
    let (md_path, json_path) = if quick {
        ("target/bench-quick.md", "target/bench-quick.json")
    } else {
        ("BENCHMARKS.md", "BENCHMARKS.json")
    };
    let written = std::fs::write(md_path, &report).and_then(|()| {
        std::fs::write(
            json_path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )
    });
    match written {
        Ok(()) => eprintln!("bench: wrote {md_path} and {json_path}"),
        Err(err) => eprintln!("bench: could not write the report: {err}"),
    }
    if failed {
        eprintln!("bench: correctness checks failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Kernel, CPU model and count, for the report.
fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Linux {}, {cores} × {cpu}", kernel.trim())
}

/// Userspace Maglev table build time (median of a few builds) per backend count.
fn maglev_build_times(quick: bool) -> (String, serde_json::Value) {
    use failover::maglev::{Member, build, is_prime};
    let builds = if quick { 3 } else { 7 };
    let mut md = format!(
        "\n## Maglev table build (userspace, median of {builds} builds)\n\n| backends | table size | ms |\n|---:|---:|---:|\n"
    );
    let mut rows = Vec::new();
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
        let mut samples: Vec<f64> = (0..builds)
            .map(|_| {
                let started = std::time::Instant::now();
                let table = build(&members, size);
                assert_eq!(table.len(), size as usize);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        md += &format!("| {n} | {size} | {median:.2} |\n");
        rows.push(serde_json::json!({"backends": n, "table_size": size, "median_ms": median, "samples_ms": samples}));
    }
    (md, serde_json::Value::Array(rows))
}
