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

use aya::{
    Ebpf,
    maps::{Array, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use failover_common::stats::action::XDP_TX;

use super::{Section, Spread};
use crate::lab::{self, *};

mod cases;
pub(super) mod reference;
mod report;

use cases::{Conntrack, ESTABLISHED_CLIENT, FILLING_REPEAT, add_services, cases, fill_conntrack};

const FRAME_LEN: usize = 64;

#[derive(Clone, Copy)]
struct Settings {
    rounds: usize,
    repeat: u32,
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
    for name in [
        "bench_restore",
        "bench_restore_new_flow",
        "bench_macswap",
        "bench_reference_nat",
        "bench_reference_pass",
    ] {
        xdp_mut(&mut harness, name).load().expect(name);
    }
    reference::fill_maps(&mut harness, ESTABLISHED_CLIENT);
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

    // The reference programs, checked like a case, then measured.
    let mut failures = Vec::new();
    for reference in reference::references(&cases) {
        let program = xdp(&harness, reference.program);
        target
            .set(0, program.fd().expect("reference fd"), 0)
            .expect("target = reference");
        set_template(&mut template, &reference.frame);
        let check = lab
            .ns
            .run(|| lab::run_xdp(restore, &reference.frame, lab.client_ifindex));
        if check.action != reference.verdict || check.output != reference.expected {
            failures.push(format!(
                "{}: wrong result (verdict {}, expected {})",
                reference.name, check.action, reference.verdict
            ));
            continue;
        }
        results.push(Measured {
            name: reference.name.into(),
            samples: measure(
                &lab,
                restore,
                &reference.frame,
                lab.client_ifindex,
                &settings,
            ),
            new_flow: false,
        });
    }

    // The data path. New-flow cases each get a fresh lab, so the state of
    // the conntrack table (filling up, or full and evicting on every insert)
    // is the one the case names, not what earlier cases left.
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
            // SYNs record nothing, so as many as any case (checked below).
            Some(Conntrack::Filling) if cases::is_syn(&case.frame) => (restore_new_flow, settings),
            Some(Conntrack::Filling) => (
                restore_new_flow,
                // Few enough new flows that the table never fills.
                Settings {
                    rounds: settings.rounds,
                    repeat: FILLING_REPEAT,
                },
            ),
            Some(Conntrack::Full) => {
                // SYNs record nothing: fill with first ACKs of other tuples.
                set_template(
                    &mut template,
                    &cases::with_tcp_flags(&case.frame, crate::packet::TCP_ACK),
                );
                fill_conntrack(lab, restore_new_flow, &case.frame, ingress);
                set_template(&mut template, &case.frame);
                (restore_new_flow, settings)
            }
        };
        let entries = lab.dataplane.flows().count();
        results.push(Measured {
            name: case.name.into(),
            samples: measure(lab, wrapper, &case.frame, ingress, &case_settings),
            new_flow: case.new_flow.is_some(),
        });
        if cases::is_syn(&case.frame) && lab.dataplane.flows().count() != entries {
            failures.push(format!("{}: SYNs recorded flows", case.name));
        }
    }

    report::section(&results, &settings, failures)
}
