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

use std::net::Ipv4Addr;

use super::{Row, Section, Spread};
use crate::{
    lab::{self, *},
    packet::{Frame, TCP_ACK, TCP_SYN},
};
use aya::{
    Ebpf,
    maps::{Array, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use failover::{BackendSpec, Proto, ServiceSpec};

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
    fn spread(&self) -> Spread {
        Spread::of(&self.samples)
    }
}

fn padded(frame: Frame) -> Frame {
    // 14 + 20 + 20 (TCP) or 8 (UDP) header bytes; pad to exactly FRAME_LEN.
    let headers = match frame.l4 {
        crate::packet::L4::Tcp { .. } => 54,
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

/// Per-packet cost of each case and the floors, measured in this run.
pub fn run(quick: bool) -> Section {
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
    let mut failures = Vec::new();
    for case in &cases {
        let ingress = if case.from_backends {
            lab.backend_ifindex
        } else {
            lab.client_ifindex
        };
        set_template(&mut template, &case.frame);
        let check = lab.ns.run(|| lab::run_xdp(restore, &case.frame, ingress));
        if check.action != case.verdict || check.output != case.expected {
            failures.push(format!(
                "{}: wrong result (verdict {}, expected {}; output {} expected bytes)",
                case.name,
                check.action,
                case.verdict,
                if check.output == case.expected {
                    "matches"
                } else {
                    "differs from"
                }
            ));
            continue;
        }
        results.push(Measured {
            name: case.name.into(),
            samples: measure(&lab, restore, &case.frame, ingress, &settings),
        });
    }

    let floor = results[0].spread().median;
    let empty = results[1].spread().median;
    let mut md = format!(
        "Each case restores its frame before every repetition and tail-calls the program; \
         its verdict and output bytes are checked first. {} rounds x {} repetitions, \
         kernel-reported ns/packet.\n\n",
        settings.rounds, settings.repeat
    );
    md +=
        "| case | median | min–max | × restore floor | net of floor |\n|---|---:|---:|---:|---:|\n";
    let mut cases_json = Vec::new();
    let mut summary = Vec::new();
    for m in &results {
        let s = m.spread();
        md += &format!(
            "| {} | {:.1} | {:.1}–{:.1} | {:.2} | {:.1} |\n",
            m.name,
            s.median,
            s.min,
            s.max,
            s.median / floor,
            s.median - floor
        );
        cases_json.push(serde_json::json!({
            "case": m.name, "median_ns": s.median, "min_ns": s.min, "max_ns": s.max,
            "ratio_to_restore_floor": s.median / floor, "samples_ns": m.samples,
        }));
        if !m.name.starts_with("floor") {
            summary.push(Row {
                measure: format!("XDP {}, ns/packet", m.name),
                ours: format!("{:.0}", s.median),
                reference: format!("{floor:.0} (restore + empty program)"),
                ratio: format!("{:.2}x", s.median / floor),
            });
        }
    }
    md += &format!("\nEmpty program in the kernel repeat loop: {empty:.1} ns.\n");
    Section {
        title: "XDP data path, ns/packet (BPF_PROG_TEST_RUN)",
        markdown: md,
        json: serde_json::json!({"rounds": settings.rounds, "repeat": settings.repeat, "cases": cases_json}),
        summary,
        failures,
    }
}
