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

use failover_common::stats::action::{XDP_PASS, XDP_REDIRECT, XDP_TX};
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

#[derive(Clone, Copy)]
struct Settings {
    rounds: usize,
    repeat: u32,
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    from_backends: bool,
    verdict: u32,
    /// The output must be one of these (several: a table picks the backend).
    expected: Vec<Vec<u8>>,
    /// Every repetition gets a 5-tuple never seen before (new-flow path),
    /// with the conntrack table in this state.
    new_flow: Option<Conntrack>,
}

#[derive(Clone, Copy)]
enum Conntrack {
    /// Below capacity: an insert takes a free entry.
    Filling,
    /// At capacity: every insert evicts the least recently used entry.
    Full,
}

/// New flows per round while the table fills: rounds x this x 2 entries
/// (forward and reply) stays well below its capacity.
const FILLING_REPEAT: u32 = 4_000;

/// Runs enough new flows through `wrapper` to fill the conntrack table.
fn fill_conntrack(lab: &TestRunLab, wrapper: &Xdp, frame: &[u8], ingress: u32) {
    let ctx = lab::xdp_md(frame.len() as u32, ingress);
    lab.ns.run(|| {
        wrapper
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat: failover_common::CONNTRACK_ENTRIES,
                ..TestRunOptions::new()
            })
            .expect("fill the conntrack table")
    });
}

struct Measured {
    name: String,
    samples: Vec<f64>,
    /// Measured through the new-flow wrapper (compare with its floor).
    new_flow: bool,
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
    let mut cases = vec![
        Case {
            name: "tcp established (conntrack hit)",
            expected: vec![
                ack.clone()
                    .with_dst(BACKEND_1, 80)
                    .routed(BACKEND_SIDE_MAC, backend_mac(11))
                    .build(),
            ],
            frame: ack.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: "tcp backend reply (reverse nat)",
            expected: vec![
                reply
                    .clone()
                    .with_src(VIP, 80)
                    .routed(CLIENT_SIDE_MAC, CLIENT_MAC)
                    .build(),
            ],
            frame: reply.build(),
            from_backends: true,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: "udp established, port-mapped",
            expected: vec![
                udp.clone()
                    .with_dst(BACKEND_2, 5353)
                    .routed(BACKEND_SIDE_MAC, backend_mac(12))
                    .build(),
            ],
            frame: udp.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: "non-vip tcp (pass)",
            expected: vec![other.clone().build()],
            frame: other.build(),
            from_backends: false,
            verdict: XDP_PASS,
            new_flow: None,
        },
    ];
    cases.extend(new_flow_cases());
    (warmup, cases)
}

/// SYNs of new flows into the two services that differ only in how the
/// backend is chosen (see `add_services`).
fn new_flow_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, port, backends) in [
        (
            "tcp syn, new flow: conntrack insert (table filling), no Maglev table",
            SELECTION_PORT,
            &[BACKEND_1][..],
        ),
        (
            "tcp syn, new flow: Maglev table, 3 backends, active-active (table filling)",
            MAGLEV_PORT,
            &[BACKEND_1, BACKEND_2, BACKEND_3][..],
        ),
    ] {
        let syn = padded(
            Frame::tcp((CLIENT, 42000), (VIP, port), TCP_SYN).macs(CLIENT_MAC, CLIENT_SIDE_MAC),
        );
        let expected = backends
            .iter()
            .map(|&backend| {
                let last = backend.octets()[3];
                syn.clone()
                    .with_dst(backend, port)
                    .routed(BACKEND_SIDE_MAC, backend_mac(last))
                    .build()
            })
            .collect();
        cases.push(Case {
            name,
            frame: syn.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            expected,
            new_flow: Some(Conntrack::Filling),
        });
    }
    let mut full = cases[0].clone();
    full.name = "tcp syn, new flow: conntrack full (each insert evicts), no Maglev table";
    full.new_flow = Some(Conntrack::Full);
    cases.push(full);
    cases
}

/// The new-flow services: selection only (no table), and Maglev over three
/// backends; port 80 (one backend: no table needed) serves the other cases.
const SELECTION_PORT: u16 = 81;
const MAGLEV_PORT: u16 = 82;

fn add_services(lab: &mut TestRunLab) {
    let tcp = |port| ServiceSpec {
        vip: VIP,
        port,
        proto: Proto::Tcp,
    };
    let dp = &mut lab.dataplane;
    dp.add_service(tcp(80), &[BackendSpec::new(BACKEND_1)])
        .expect("tcp service");
    dp.add_service(
        ServiceSpec::new(VIP, 53, Proto::Udp),
        &[BackendSpec::new(BACKEND_2).port(5353)],
    )
    .expect("udp service");
    let selection = dp
        .add_service(tcp(SELECTION_PORT), &[BackendSpec::new(BACKEND_1)])
        .expect("selection service");
    let no_table = failover::dataplane::ServiceSettings {
        table_size: 0,
        ..Default::default()
    };
    dp.set_settings(selection.id, no_table).expect("no table");
    dp.add_service(
        tcp(MAGLEV_PORT),
        &[BACKEND_1, BACKEND_2, BACKEND_3].map(BackendSpec::new),
    )
    .expect("maglev service");
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
    add_services(&mut lab);

    let mut harness = Ebpf::load(super::harness_object()).expect("load bench harness");
    for name in ["bench_restore", "bench_restore_new_flow", "bench_macswap"] {
        xdp_mut(&mut harness, name).load().expect(name);
    }
    let mut template: Array<_, [u64; FRAME_LEN / 8]> =
        Array::try_from(harness.take_map("BENCH_TEMPLATE").expect("template map"))
            .expect("template");
    let mut target = ProgramArray::try_from(harness.take_map("BENCH_TARGET").expect("target map"))
        .expect("target");
    let restore = xdp(&harness, "bench_restore");
    let restore_new_flow = xdp(&harness, "bench_restore_new_flow");
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
        new_flow: false,
    });
    results.push(Measured {
        name: "floor: empty program (repeat loop)".into(),
        samples: measure(&lab, pass, &floor_frame, lab.client_ifindex, &settings),
        new_flow: false,
    });
    results.push(Measured {
        name: "floor: restore with a new 5-tuple + empty program".into(),
        samples: measure(
            &lab,
            restore_new_flow,
            &floor_frame,
            lab.client_ifindex,
            &settings,
        ),
        new_flow: true,
    });
    let macswap = xdp(&harness, "bench_macswap");
    let macswap_check = lab
        .ns
        .run(|| lab::run_xdp(macswap, &floor_frame, lab.client_ifindex));
    assert_eq!(macswap_check.action, XDP_TX, "macswap verdict");
    results.push(Measured {
        name: "floor: mac swap + XDP_TX (repeat loop)".into(),
        samples: measure(&lab, macswap, &floor_frame, lab.client_ifindex, &settings),
        new_flow: false,
    });

    // The data path. New-flow cases each get a fresh lab, so the state of
    // the conntrack table (filling up, or full and evicting on every insert)
    // is the one the case names, not what earlier cases left.
    let mut failures = Vec::new();
    for case in &cases {
        let fresh = case.new_flow.map(|_| {
            let mut fresh = TestRunLab::new();
            add_services(&mut fresh);
            fresh
        });
        let lab = fresh.as_ref().unwrap_or(&lab);
        let forwarder = lab.dataplane.program().expect("forwarder");
        target
            .set(0, forwarder.fd().expect("forwarder fd"), 0)
            .expect("target = forwarder");
        let ingress = if case.from_backends {
            lab.backend_ifindex
        } else {
            lab.client_ifindex
        };
        set_template(&mut template, &case.frame);
        let check = lab.ns.run(|| lab::run_xdp(restore, &case.frame, ingress));
        let output_ok = case.expected.contains(&check.output);
        if check.action != case.verdict || !output_ok {
            failures.push(format!(
                "{}: wrong result (verdict {}, expected {}; output {} expected bytes)",
                case.name,
                check.action,
                case.verdict,
                if output_ok { "matches" } else { "differs from" }
            ));
            continue;
        }
        let (wrapper, case_settings) = match case.new_flow {
            None => (restore, settings),
            Some(Conntrack::Filling) => (
                restore_new_flow,
                // Few enough new flows that the table never fills.
                Settings {
                    rounds: settings.rounds,
                    repeat: FILLING_REPEAT,
                },
            ),
            Some(Conntrack::Full) => {
                fill_conntrack(lab, restore_new_flow, &case.frame, ingress);
                (restore_new_flow, settings)
            }
        };
        results.push(Measured {
            name: case.name.into(),
            samples: measure(lab, wrapper, &case.frame, ingress, &case_settings),
            new_flow: case.new_flow.is_some(),
        });
    }

    let median_of = |name: &str| {
        results
            .iter()
            .find(|m| m.name.starts_with(name))
            .map_or(f64::NAN, |m| m.spread().median)
    };
    let restore_floor = median_of("floor: restore + empty");
    let new_flow_floor = median_of("floor: restore with a new 5-tuple");
    let empty = median_of("floor: empty program");
    let macswap = median_of("floor: mac swap");
    let mut md = format!(
        "Each case restores its frame before every repetition and tail-calls the program; \
         its verdict and output bytes are checked first. New-flow cases also give every \
         repetition a 5-tuple never seen before, so each one inserts a conntrack entry; \
         they are compared with the floor of that wrapper. {} rounds x {} repetitions, \
         kernel-reported ns/packet.\n\n",
        settings.rounds, settings.repeat
    );
    md += "| case | median | min–max | × its wrapper floor | net of that floor | × empty program | × MAC swap + XDP_TX |\n\
           |---|---:|---:|---:|---:|---:|---:|\n";
    let mut cases_json = Vec::new();
    let mut summary = Vec::new();
    for m in &results {
        let s = m.spread();
        let floor = if m.new_flow {
            new_flow_floor
        } else {
            restore_floor
        };
        md += &format!(
            "| {} | {:.1} | {:.1}–{:.1} | {:.2} | {:.1} | {:.2} | {:.2} |\n",
            m.name,
            s.median,
            s.min,
            s.max,
            s.median / floor,
            s.median - floor,
            s.median / empty,
            s.median / macswap,
        );
        cases_json.push(serde_json::json!({
            "case": m.name, "median_ns": s.median, "min_ns": s.min, "max_ns": s.max,
            "wrapper_floor_ns": floor, "ratio_to_wrapper_floor": s.median / floor,
            "ratio_to_empty": s.median / empty, "ratio_to_macswap": s.median / macswap,
            "samples_ns": m.samples,
        }));
        if !m.name.starts_with("floor") {
            summary.push(Row {
                measure: format!("XDP {}, ns/packet", m.name),
                ours: format!("{:.0}", s.median),
                reference: format!("{floor:.0} (wrapper + empty program)"),
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
