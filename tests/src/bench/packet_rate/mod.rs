//! Packet rate through a namespace lab: generator → edge host → sink.
//!
//! ```text
//!   gen                      lb (the case's forwarder)                 sink
//!   gen ──────────────────── lbc 192.0.2.1/24
//!                            lbs 198.51.100.1/28 ─────────────────── sink (198.51.100.2)
//!   floor: gen ───────────────────────────────────────────────────── sink
//!
//!   UDP 64-byte frames to 203.0.113.10:53 over 1024 source ports;
//!   forwarded to the backend 198.51.100.2:5353 (the sink).
//! ```
//!
//! The generator is `bench_generate` run with BPF_PROG_TEST_RUN in
//! live-frames mode from a thread inside its namespace: its XDP_TX becomes a
//! transmit out of the generator's veth. The sink is `bench_sink`, a native
//! XDP program on the sink's veth that counts frames (and those addressed
//! to the expected destination), keeps a sample now and then and drops them.
//! Cases, each in its own namespaces, rounds interleaved so that load from
//! elsewhere on the machine hits every case alike:
//!
//! - floor: generator straight into the sink, no forwarder;
//! - ours, native: the data path attached in driver mode on `lbc`;
//! - reference: minimal NAT + redirect, native on `lbc`: the same rewrite
//!   with one hash lookup and nothing else (`bench_reference_redirect`),
//!   what the extra hop through a forwarder costs by itself;
//! - ours, skb: the data path in generic mode on `lbc`;
//! - nftables DNAT: plain kernel forwarding with a DNAT rule in `lbc`'s
//!   prerouting hook.
//!
//! The generator's frames reach `lbc` through veth's `ndo_xdp_xmit`, which
//! delivers only when `lbc` has NAPI: a native XDP program (ours, native),
//! or GRO turned on (skb mode and nftables; generic and native XDP cannot
//! share an interface). GRO on is what a NIC always has (NAPI) and adds no
//! XDP program the do-it-yourself user would not run, so it is the fair
//! setting for nftables; it aggregates nothing here (UDP forwarding GRO is
//! off). A native pass program on `lbc` instead measured the same for
//! nftables within the noise. Our program is attached only on `lbc`: the
//! lab carries one direction. The sink's program is the NAPI on `lbs`'s
//! peer that a native redirect needs; in the skb and nftables cases it runs
//! on the skbs the stack sends, as any stack-delivered packet would.
//! Neighbours are static (nud permanent), so nothing resolves addresses
//! during a round.
//!
//! A round is one live-frames test run of a fixed frame count, per case
//! sized from its warm-up to last about a second (0.3 s with `--quick`).
//! One run per round because each test_run call spends ~25 ms setting up
//! and tearing down with no traffic (measured: in 100k-frame calls the floor
//! read 1.8 Mpps instead of 4.7). The sink's counters and /proc/stat are
//! sampled every 5 ms during the round, and the figures come from its
//! steady part, between 10 % and 90 % of its frames delivered: rate = frames
//! at the sink per second; CPU = the whole machine's busy time (user, nice,
//! system, irq, softirq) as "cores busy" and CPU-seconds per million
//! delivered packets. Generator, forwarder and sink all run in softirq
//! context on the generator's CPU, so the rate is roughly the inverse of
//! their summed per-packet cost; load from elsewhere on the machine shows up
//! in the CPU figures, so the machine's busy cores just before and after the
//! rounds are reported next to them. Loss is over the whole round (frames
//! sent that never reached the sink).
//!
//! Correctness (a failure fails the benchmark): the sink must receive most
//! of what was sent, frames must arrive rewritten to the backend (sink
//! counter of frames addressed to backend:port, and a sampled frame checked
//! byte by byte: MACs, addresses, ports, TTL, checksums), and our data
//! path's counters must show the forwarding.
//!
//! The parts: `lab` (the cases, their namespaces and forwarders),
//! `harness` (the generator and the sink), `measure` (a round and its
//! steady part), `check` (what must hold for a case), `report`.

mod check;
mod harness;
mod lab;
mod measure;
mod report;

use std::{net::Ipv4Addr, time::Duration};

use failover::AttachMode;

use self::{
    check::{CaseResult, warm_up_and_check},
    lab::{Forwarder, Lab, build_lab},
    measure::Round,
    report::report,
};
use super::{Section, cpu::machine_busy_seconds};

const FRAME_LEN: usize = 64;
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP_PORT: u16 = 53;
const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const BACKEND_PORT: u16 = 5353;
const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Must match `FIRST_SOURCE_PORT` and `GENERATED_FLOWS` in the eBPF harness.
const FIRST_SOURCE_PORT: u16 = 10_000;
const GENERATED_FLOWS: u16 = 1024;

const GEN_IF: &str = "gen";
const LB_IN_IF: &str = "lbc";
const LB_OUT_IF: &str = "lbs";
const SINK_IF: &str = "sink";
const GEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const LB_IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
const LB_OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
const SINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x02];

/// Frames per live-frames batch (the kernel's maximum is 256).
const BATCH: u32 = 64;

struct Settings {
    rounds: usize,
    /// How long the machine's background load is measured before the rounds.
    background: Duration,
    /// Each case's rounds send the frames the case delivers in about this
    /// long (from its warm-up rate), so slow cases do not stretch the run.
    round_seconds: f64,
    /// Frames of the warm-up that sizes the rounds.
    warm_up_packets: u32,
}

const CASES: [Forwarder; 5] = [
    Forwarder::None,
    Forwarder::Ours(AttachMode::Native),
    Forwarder::ReferenceNat,
    Forwarder::Ours(AttachMode::Skb),
    Forwarder::NftDnat,
];

/// Busy cores of the whole machine over `duration`, before any traffic.
fn background_cores(duration: Duration) -> f64 {
    let before = machine_busy_seconds();
    std::thread::sleep(duration);
    (machine_busy_seconds() - before) / duration.as_secs_f64()
}

/// Measures every case, rounds interleaved.
pub fn run(quick: bool) -> Section {
    let settings = if quick {
        Settings {
            rounds: 3,
            background: Duration::from_millis(250),
            round_seconds: 0.3,
            warm_up_packets: 200_000,
        }
    } else {
        Settings {
            rounds: 7,
            background: Duration::from_millis(500),
            round_seconds: 1.0,
            warm_up_packets: 500_000,
        }
    };
    let mut labs: Vec<Lab> = CASES.iter().map(|&f| build_lab(f)).collect();
    let mut failures = Vec::new();
    let mut round_packets = Vec::new();
    for lab in &mut labs {
        let (problems, packets) = warm_up_and_check(lab, &settings);
        failures.extend(problems);
        round_packets.push(packets);
    }

    let background = background_cores(settings.background);
    let ours_before: Vec<Option<(u64, u64)>> = labs.iter().map(Lab::our_counters).collect();
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); labs.len()];
    for _ in 0..settings.rounds {
        for ((lab, rounds), &packets) in labs.iter().zip(&mut rounds).zip(&round_packets) {
            rounds.push(lab.round(packets));
        }
    }
    let results: Vec<CaseResult> = labs
        .iter()
        .zip(rounds)
        .zip(ours_before)
        .zip(round_packets)
        .map(|(((lab, rounds), before), round_packets)| CaseResult {
            forwarder: lab.forwarder,
            round_packets,
            rounds,
            ours: lab
                .our_counters()
                .zip(before)
                .map(|(after, before)| (after.0 - before.0, after.1 - before.1)),
        })
        .collect();
    let background_after = background_cores(settings.background);
    drop(labs);
    failures.extend(results.iter().flat_map(CaseResult::failures));
    report(
        &settings,
        [background, background_after],
        &results,
        failures,
    )
}
