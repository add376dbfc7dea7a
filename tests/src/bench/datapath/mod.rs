//! Per-packet cost of the XDP data path, measured with BPF_PROG_TEST_RUN.
//!
//! Each case restores its template frame before every repetition (the
//! `bench_restore` wrapper tail-calls the program under test), so every
//! repetition really takes the path named; one verified run per case checks
//! verdict and output bytes first, and a wrong result fails the benchmark.
//! Floors are measured in the same run through the same harness: the
//! wrapper tail-calling the empty program, and the bare empty and MAC-swap
//! programs in the kernel's repeat loop. Rounds of all measurements
//! interleave. Figures are kernel-reported ns/packet; compare ratios, not
//! absolute times (shared, noisy machines).

use aya::{
    Ebpf,
    maps::{Array, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use failover_common::stats::action::XDP_TX;

use super::{Section, Spread, xdp_mut};
use crate::lab::{self, *};

mod cases;
pub(super) mod reference;
mod report;

use cases::{Conntrack, ESTABLISHED_CLIENT, FILLING_REPEAT, add_services, cases, fill_conntrack};

const FRAME_LEN: usize = 64;

/// The harness's template frames, by family.
struct Templates {
    v4: Array<aya::maps::MapData, [u64; FRAME_LEN / 8]>,
    v6: Array<aya::maps::MapData, [u64; cases::FRAME6_LEN / 8]>,
}

impl Templates {
    /// Writes `frame` into the template of its length.
    fn set(&mut self, frame: &[u8]) {
        let words = |frame: &[u8]| -> Vec<u64> {
            frame
                .chunks_exact(8)
                .map(|chunk| u64::from_ne_bytes(chunk.try_into().unwrap()))
                .collect()
        };
        match frame.len() {
            FRAME_LEN => self
                .v4
                .set(
                    0,
                    <[u64; FRAME_LEN / 8]>::try_from(words(frame)).unwrap(),
                    0,
                )
                .expect("template write"),
            cases::FRAME6_LEN => self
                .v6
                .set(
                    0,
                    <[u64; cases::FRAME6_LEN / 8]>::try_from(words(frame)).unwrap(),
                    0,
                )
                .expect("template6 write"),
            other => panic!(
                "bench frames are {FRAME_LEN} or {} bytes, not {other}",
                cases::FRAME6_LEN
            ),
        }
    }
}

#[derive(Clone, Copy)]
struct Settings {
    rounds: usize,
    repeat: u32,
}

struct Measured {
    name: String,
    samples: Vec<f64>,
    /// The wrapper it was measured through (compare with its floor).
    wrapper: Wrapper,
}

/// The harness program a case runs through, each with its floor (the
/// wrapper tail-calling the empty program).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrapper {
    Restore,
    /// Also gives every repetition a new 5-tuple.
    NewFlow,
    /// `Restore` for the larger IPv6 frames.
    Restore6,
    NewFlow6,
}

impl Wrapper {
    fn program(self) -> &'static str {
        match self {
            Self::Restore => "bench_restore",
            Self::NewFlow => "bench_restore_new_flow",
            Self::Restore6 => "bench_restore6",
            Self::NewFlow6 => "bench_restore_new_flow6",
        }
    }

    fn floor(self) -> &'static str {
        match self {
            Self::Restore => "floor: restore + empty program",
            Self::NewFlow => "floor: restore with a new 5-tuple + empty program",
            Self::Restore6 => "floor: ipv6 restore + empty program",
            Self::NewFlow6 => "floor: ipv6 restore with a new 5-tuple + empty program",
        }
    }

    /// The wrapper for `frame` (IPv6 frames are longer), new tuples or not.
    fn of(frame: &[u8], new_flow: bool) -> Self {
        match (frame.len() == cases::FRAME6_LEN, new_flow) {
            (false, false) => Self::Restore,
            (false, true) => Self::NewFlow,
            (true, false) => Self::Restore6,
            (true, true) => Self::NewFlow6,
        }
    }
}

impl Measured {
    fn spread(&self) -> Spread {
        Spread::of(&self.samples)
    }
}

fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> &'a Xdp {
    ebpf.program(name).expect(name).try_into().expect(name)
}

/// One measurement: `program` (a wrapper, tail-calling `target`, or a bare
/// program) on `frame` as if received on `ingress`, `repeat` times a round.
struct Job<'a> {
    name: String,
    lab: &'a TestRunLab,
    program: &'a Xdp,
    target: Option<&'a Xdp>,
    frame: Vec<u8>,
    ingress: u32,
    repeat: u32,
    wrapper: Wrapper,
    /// Flow entries before, for a case of SYNs (which must record none).
    syn_entries: Option<u64>,
}

/// Kernel-reported ns per repetition of one round of `job`.
fn one_round(job: &Job) -> f64 {
    let ctx = lab::xdp_md(job.frame.len() as u32, job.ingress);
    job.lab.ns.run(|| {
        let result = job
            .program
            .test_run(TestRunOptions {
                data_in: Some(&job.frame),
                ctx_in: Some(&ctx),
                repeat: job.repeat,
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN");
        result.duration.as_nanos() as f64
    })
}

/// Per-packet cost of each case and the floors, measured in this run.
/// Rounds interleave: round `r` of every measurement runs before round
/// `r + 1` of any, so a slow phase of a noisy machine is shared by all
/// rather than landing on one case (and on one side of a ratio).
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
    let wrappers = [
        Wrapper::Restore,
        Wrapper::NewFlow,
        Wrapper::Restore6,
        Wrapper::NewFlow6,
    ];
    for name in wrappers.map(Wrapper::program).into_iter().chain([
        "bench_macswap",
        "bench_reference_nat",
        "bench_reference_pass",
    ]) {
        xdp_mut(&mut harness, name).load().expect(name);
    }
    reference::fill_maps(&mut harness, ESTABLISHED_CLIENT);
    let mut templates = Templates {
        v4: Array::try_from(harness.take_map("BENCH_TEMPLATE").expect("template map"))
            .expect("template"),
        v6: Array::try_from(harness.take_map("BENCH_TEMPLATE6").expect("template6 map"))
            .expect("template6"),
    };
    let mut target = ProgramArray::try_from(harness.take_map("BENCH_TARGET").expect("target map"))
        .expect("target");
    let wrapper = |w: Wrapper| xdp(&harness, w.program());
    let restore = wrapper(Wrapper::Restore);
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
    // New-flow cases each get a fresh lab, so the state of the conntrack
    // table (filling up, or full and evicting on every insert) is the one
    // the case names, not what other cases leave.
    let fresh: Vec<Option<TestRunLab>> = cases
        .iter()
        .map(|case| {
            case.new_flow.map(|_| {
                let mut fresh = TestRunLab::new();
                add_services(&mut fresh);
                fresh
            })
        })
        .collect();

    let set_template = |templates: &mut Templates, frame: &[u8]| templates.set(frame);
    let set_target = |target: &mut ProgramArray<_>, program: &Xdp| {
        target
            .set(0, program.fd().expect("target fd"), 0)
            .expect("target write");
    };

    let floor_frame = cases[0].frame.clone();
    let floor_frame6 = cases
        .iter()
        .find(|c| c.frame.len() == cases::FRAME6_LEN)
        .expect("an ipv6 case")
        .frame
        .clone();
    let job = |name: &str, program, target, wrapper| Job {
        name: name.into(),
        lab: &lab,
        program,
        target,
        frame: floor_frame.clone(),
        ingress: lab.client_ifindex,
        repeat: settings.repeat,
        wrapper,
        syn_entries: None,
    };
    let macswap = xdp(&harness, "bench_macswap");
    let macswap_check = lab
        .ns
        .run(|| lab::run_xdp(macswap, &floor_frame, lab.client_ifindex));
    assert_eq!(macswap_check.action, XDP_TX, "macswap verdict");
    let mut jobs: Vec<Job> = wrappers
        .iter()
        .map(|&w| {
            let frame = match w {
                Wrapper::Restore | Wrapper::NewFlow => floor_frame.clone(),
                Wrapper::Restore6 | Wrapper::NewFlow6 => floor_frame6.clone(),
            };
            Job {
                frame,
                ..job(w.floor(), wrapper(w), Some(pass), w)
            }
        })
        .collect();
    jobs.push(job(
        "floor: empty program (repeat loop)",
        pass,
        None,
        Wrapper::Restore,
    ));
    jobs.push(job(
        "floor: mac swap + XDP_TX (repeat loop)",
        macswap,
        None,
        Wrapper::Restore,
    ));

    // The reference programs, checked like a case.
    let mut failures = Vec::new();
    for reference in reference::references(&cases) {
        let program = xdp(&harness, reference.program);
        set_target(&mut target, program);
        set_template(&mut templates, &reference.frame);
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
        jobs.push(Job {
            frame: reference.frame.clone(),
            ..job(reference.name, restore, Some(program), Wrapper::Restore)
        });
    }

    // The data path's cases, each checked first.
    for (case, fresh) in cases.iter().zip(&fresh) {
        let lab = fresh.as_ref().unwrap_or(&lab);
        let forwarder = lab.dataplane.program().expect("forwarder");
        set_target(&mut target, forwarder);
        let ingress = if case.from_backends {
            lab.backend_ifindex
        } else {
            lab.client_ifindex
        };
        set_template(&mut templates, &case.frame);
        let plain = wrapper(Wrapper::of(&case.frame, false));
        let check = lab.ns.run(|| lab::run_xdp(plain, &case.frame, ingress));
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
        let chosen = Wrapper::of(&case.frame, case.new_flow.is_some());
        let program = wrapper(chosen);
        let repeat = match case.new_flow {
            None => settings.repeat,
            // SYNs record nothing, so as many as any case (checked below).
            Some(Conntrack::Filling) if cases::is_syn(&case.frame) => settings.repeat,
            // Few enough new flows that the table never fills.
            Some(Conntrack::Filling) => FILLING_REPEAT,
            Some(Conntrack::Full) => {
                // SYNs record nothing: fill with first ACKs of other tuples.
                set_template(
                    &mut templates,
                    &cases::with_tcp_flags(&case.frame, crate::packet::TCP_ACK),
                );
                fill_conntrack(lab, program, &case.frame, ingress);
                settings.repeat
            }
        };
        jobs.push(Job {
            name: case.name.into(),
            lab,
            program,
            target: Some(forwarder),
            frame: case.frame.clone(),
            ingress,
            repeat,
            wrapper: chosen,
            syn_entries: cases::is_syn(&case.frame).then(|| lab.dataplane.flows().count()),
        });
    }

    let mut samples = vec![Vec::new(); jobs.len()];
    for _ in 0..settings.rounds {
        for (job, samples) in jobs.iter().zip(&mut samples) {
            if let Some(program) = job.target {
                set_target(&mut target, program);
            }
            set_template(&mut templates, &job.frame);
            samples.push(one_round(job));
        }
    }
    for job in &jobs {
        if job
            .syn_entries
            .is_some_and(|before| job.lab.dataplane.flows().count() != before)
        {
            failures.push(format!("{}: SYNs recorded flows", job.name));
        }
    }
    let results: Vec<Measured> = jobs
        .iter()
        .zip(samples)
        .map(|(job, samples)| Measured {
            name: job.name.clone(),
            samples,
            wrapper: job.wrapper,
        })
        .collect();
    report::section(&results, &settings, failures)
}
