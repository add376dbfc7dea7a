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

use failover_common::stats::action::XDP_REDIRECT;
use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use failover::{AttachMode, BackendSpec, Dataplane, Proto, ServiceSpec};
use failover_common::{Counter, stats::reason};

use super::{Row, Section, Spread, cpu::machine_busy_seconds, peers};
use crate::{
    netns::{self, NetNs},
    packet::{self, Frame, L4},
    pins::PinDir,
};

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

/// Bounds on the frames of one round.
const MIN_ROUND_PACKETS: f64 = 100_000.0;
const MAX_ROUND_PACKETS: f64 = 20_000_000.0;
/// How often the sink and /proc/stat are read during a round.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(5);
/// Fewer samples in the steady part than this: use the whole round.
const MIN_STEADY_SAMPLES: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Forwarder {
    /// The floor: generator straight into the sink.
    None,
    Ours(AttachMode),
    NftDnat,
}

impl Forwarder {
    fn name(self) -> &'static str {
        match self {
            Self::None => "floor: generator → sink, no forwarder",
            Self::Ours(AttachMode::Skb) => "ours, skb (generic) mode",
            Self::Ours(_) => "ours, native",
            Self::NftDnat => "nftables DNAT (kernel forwarding)",
        }
    }

    /// What the sink should see as destination.
    fn expected_dst(self) -> (Ipv4Addr, u16) {
        match self {
            Self::None => (VIP, VIP_PORT),
            _ => (BACKEND, BACKEND_PORT),
        }
    }
}

/// One case's namespaces and programs. Field order is drop order: the
/// harness (its sink link) and the data path detach before the pins and
/// namespaces go.
struct Lab {
    forwarder: Forwarder,
    harness: Ebpf,
    dataplane: Option<Dataplane>,
    _pins: Option<PinDir>,
    gen_ns: NetNs,
    _lb: Option<NetNs>,
    _sink: NetNs,
    gen_ifindex: u32,
    frame: Vec<u8>,
}

/// Delivery and machine CPU time over part of a round.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    received: u64,
    seconds: f64,
    cpu_seconds: f64,
}

/// What one round measured.
#[derive(Clone, Copy, Debug, Default)]
struct Round {
    sent: u64,
    received: u64,
    addressed_as_expected: u64,
    /// The steady part the rate and CPU figures come from.
    steady: Window,
}

impl Round {
    fn mpps(&self) -> f64 {
        self.steady.received as f64 / self.steady.seconds / 1e6
    }

    fn cores_busy(&self) -> f64 {
        self.steady.cpu_seconds / self.steady.seconds
    }

    fn cpu_seconds_per_mpkt(&self) -> f64 {
        self.steady.cpu_seconds / (self.steady.received.max(1) as f64 / 1e6)
    }

    fn loss(&self) -> f64 {
        1.0 - self.received as f64 / self.sent.max(1) as f64
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn new_namespace(role: &str) -> NetNs {
    let ns = NetNs::new(role);
    // No IPv6: no router solicitations or DAD probes reach the sink.
    ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
    ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
    ns
}

fn set_mac(ns: &NetNs, interface: &str, mac: [u8; 6]) {
    ns.ip(&["link", "set", "dev", interface, "address", &mac_text(mac)]);
}

/// The lb: addresses on both sides, forwarding on, and a permanent
/// neighbour for the backend so `bpf_fib_lookup` and the kernel resolve it
/// without ARP.
fn configure_lb(lb: &NetNs) {
    lb.ip(&["addr", "add", "192.0.2.1/24", "dev", LB_IN_IF]);
    lb.ip(&["addr", "add", "198.51.100.1/28", "dev", LB_OUT_IF]);
    lb.ip(&[
        "neigh",
        "add",
        &BACKEND.to_string(),
        "lladdr",
        &mac_text(SINK_MAC),
        "nud",
        "permanent",
        "dev",
        LB_OUT_IF,
    ]);
    lb.sysctl("net/ipv4/conf/all/forwarding", "1");
}

/// The generator's frame: UDP without checksum, so varying the source port
/// keeps it valid, padded to exactly `FRAME_LEN` bytes.
fn generated_frame(next_hop_mac: [u8; 6]) -> Vec<u8> {
    let l4 = L4::Udp {
        src_port: FIRST_SOURCE_PORT,
        dst_port: VIP_PORT,
        checksum: false,
    };
    let frame = Frame::new(GEN_ADDR, VIP, l4)
        .macs(GEN_MAC, next_hop_mac)
        .with_payload(&[0x5a; FRAME_LEN - 42])
        .build();
    assert_eq!(frame.len(), FRAME_LEN);
    frame
}

fn xdp_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name).expect(name).try_into().expect(name)
}

fn frame_words(frame: &[u8]) -> [u64; FRAME_LEN / 8] {
    let mut words = [0u64; FRAME_LEN / 8];
    for (word, chunk) in words.iter_mut().zip(frame.chunks_exact(8)) {
        *word = u64::from_ne_bytes(chunk.try_into().unwrap());
    }
    words
}

/// Loads the generator and the sink, gives them the frame and the expected
/// destination, and attaches the sink (native) in `sink`.
fn load_harness(sink: &NetNs, frame: &[u8], expected: (Ipv4Addr, u16)) -> Ebpf {
    let mut harness = Ebpf::load(super::harness_object()).expect("load bench harness");
    for name in ["bench_generate", "bench_sink"] {
        xdp_mut(&mut harness, name).load().expect(name);
    }
    let mut template: Array<_, [u64; FRAME_LEN / 8]> =
        Array::try_from(harness.map_mut("BENCH_TEMPLATE").expect("template map"))
            .expect("template");
    template
        .set(0, frame_words(frame), 0)
        .expect("template write");
    // The sink compares the frame's raw network-order bytes.
    let raw = [
        u32::from_ne_bytes(expected.0.octets()),
        u32::from(u16::from_ne_bytes(expected.1.to_be_bytes())),
    ];
    let mut expect: Array<_, [u32; 2]> =
        Array::try_from(harness.map_mut("BENCH_SINK_EXPECT").expect("expect map")).expect("expect");
    expect.set(0, raw, 0).expect("expect write");
    let sink_program = xdp_mut(&mut harness, "bench_sink");
    sink.run(|| sink_program.attach(SINK_IF, XdpMode::Driver))
        .expect("attach the sink");
    harness
}

/// Our data path on `lbc`, with the UDP service to the backend.
fn start_ours(lb: &NetNs, mode: AttachMode) -> (Dataplane, PinDir) {
    let pins = PinDir::new();
    let mut dataplane = Dataplane::load(pins.path()).expect("load the data path");
    let used = lb
        .run(|| dataplane.attach(LB_IN_IF, mode))
        .expect("attach the forwarder");
    assert_eq!(used, mode, "attach mode");
    if mode == AttachMode::Skb {
        lb.enable_gro(LB_IN_IF);
    }
    dataplane
        .add_service(
            ServiceSpec::new(VIP, VIP_PORT, Proto::Udp),
            &[BackendSpec::new(BACKEND).port(BACKEND_PORT)],
        )
        .expect("add the udp service");
    (dataplane, pins)
}

fn build_lab(forwarder: Forwarder) -> Lab {
    let gen_ns = new_namespace("rate-gen");
    let sink = new_namespace("rate-sink");
    let lb = (forwarder != Forwarder::None).then(|| new_namespace("rate-lb"));
    let next_hop_mac = match &lb {
        None => {
            netns::veth((&gen_ns, GEN_IF), (&sink, SINK_IF));
            SINK_MAC
        }
        Some(lb) => {
            netns::veth((&gen_ns, GEN_IF), (lb, LB_IN_IF));
            netns::veth((lb, LB_OUT_IF), (&sink, SINK_IF));
            set_mac(lb, LB_IN_IF, LB_IN_MAC);
            set_mac(lb, LB_OUT_IF, LB_OUT_MAC);
            configure_lb(lb);
            LB_IN_MAC
        }
    };
    set_mac(&gen_ns, GEN_IF, GEN_MAC);
    set_mac(&sink, SINK_IF, SINK_MAC);

    let frame = generated_frame(next_hop_mac);
    let harness = load_harness(&sink, &frame, forwarder.expected_dst());
    let (dataplane, pins) = match (forwarder, &lb) {
        (Forwarder::Ours(mode), Some(lb)) => {
            let (dataplane, pins) = start_ours(lb, mode);
            (Some(dataplane), Some(pins))
        }
        (Forwarder::NftDnat, Some(lb)) => {
            lb.enable_gro(LB_IN_IF);
            peers::apply_nft(
                lb,
                &peers::dnat_ruleset(
                    "udp",
                    &VIP.to_string(),
                    VIP_PORT,
                    &BACKEND.to_string(),
                    BACKEND_PORT,
                ),
            );
            (None, None)
        }
        _ => (None, None),
    };
    let gen_ifindex = gen_ns.ifindex(GEN_IF);
    Lab {
        forwarder,
        harness,
        dataplane,
        _pins: pins,
        gen_ns,
        _lb: lb,
        _sink: sink,
        gen_ifindex,
        frame,
    }
}

/// Sink counters and machine CPU time at one instant.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    received: u64,
    expected: u64,
    cpu_seconds: f64,
}

/// The part of a round between two samples.
fn window(from: &Sample, to: &Sample) -> Window {
    Window {
        received: to.received - from.received,
        seconds: (to.at - from.at).as_secs_f64(),
        cpu_seconds: to.cpu_seconds - from.cpu_seconds,
    }
}

/// The steady part of a round: from the first sample past 10 % of the
/// frames the sink received to the last before 90 %, which leaves out the
/// test run's setup and teardown. The whole round if too few samples fall
/// inside.
fn steady_window(start: &Sample, samples: &[Sample], end: &Sample) -> Window {
    let total = end.received - start.received;
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            let got = s.received - start.received;
            got >= total / 10 && got <= total - total / 10
        })
        .collect();
    match (inside.first(), inside.last()) {
        (Some(first), Some(last)) if inside.len() >= MIN_STEADY_SAMPLES => window(first, last),
        _ => window(start, end),
    }
}

impl Lab {
    /// Sink counters summed over CPUs: (all frames, addressed as expected).
    fn sink_counts(&self) -> (u64, u64) {
        let counts: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.harness.map("BENCH_SINK_COUNTS").expect("counts map"))
                .expect("counts");
        let sum = |index: u32| counts.get(&index, 0).expect("sink counts").iter().sum();
        (sum(0), sum(1))
    }

    fn sample(&self) -> Sample {
        let (received, expected) = self.sink_counts();
        Sample {
            at: Instant::now(),
            received,
            expected,
            cpu_seconds: machine_busy_seconds(),
        }
    }

    fn sink_sample(&self) -> Vec<u8> {
        let sample: Array<_, [u64; FRAME_LEN / 8]> =
            Array::try_from(self.harness.map("BENCH_SINK_SAMPLE").expect("sample map"))
                .expect("sample");
        let words = sample.get(&0, 0).expect("sample read");
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    fn clear_sink_sample(&mut self) {
        let mut sample: Array<_, [u64; FRAME_LEN / 8]> = Array::try_from(
            self.harness
                .map_mut("BENCH_SINK_SAMPLE")
                .expect("sample map"),
        )
        .expect("sample");
        sample.set(0, [0; FRAME_LEN / 8], 0).expect("sample clear");
    }

    /// Generates `packets` frames in one live-frames test run, from a thread
    /// in the generator's namespace. One call per round: each call costs
    /// tens of milliseconds of setup and teardown with no traffic.
    fn generate(&self, packets: u32) {
        let generator: &Xdp = self
            .harness
            .program("bench_generate")
            .expect("generator")
            .try_into()
            .expect("generator");
        let ctx = crate::lab::xdp_md(FRAME_LEN as u32, self.gen_ifindex);
        // Live mode reports no verdict: delivery is counted at the sink.
        self.gen_ns
            .run(|| {
                generator.test_run(TestRunOptions {
                    data_in: Some(&self.frame),
                    ctx_in: Some(&ctx),
                    repeat: packets,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..TestRunOptions::new()
                })
            })
            .expect("BPF_PROG_TEST_RUN (live frames)");
    }

    /// Sends `packets` frames while sampling the sink and the CPU; the
    /// generator's packet count bounds the round.
    fn round(&self, packets: u32) -> Round {
        let start = self.sample();
        let mut samples = Vec::new();
        std::thread::scope(|scope| {
            let generator = scope.spawn(|| self.generate(packets));
            while !generator.is_finished() {
                std::thread::sleep(SAMPLE_INTERVAL);
                samples.push(self.sample());
            }
            generator
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        });
        // Frames still in a veth ring land within microseconds.
        std::thread::sleep(Duration::from_millis(5));
        let end = self.sample();
        Round {
            sent: u64::from(packets),
            received: end.received - start.received,
            addressed_as_expected: end.expected - start.expected,
            steady: steady_window(&start, &samples, &end),
        }
    }

    /// Our data path's (redirect verdicts, forwarded packets) so far.
    fn our_counters(&self) -> Option<(u64, u64)> {
        let counters = self.dataplane.as_ref()?.counters();
        let verdicts = counters.verdicts().expect("verdict counters");
        let reasons = counters.reasons().expect("reason counters");
        let packets = |c: &Counter| c.packets;
        let forwarded = packets(&reasons[reason::FWD_NEW_FLOW as usize])
            + packets(&reasons[reason::FWD_ESTABLISHED as usize]);
        Some((packets(&verdicts[XDP_REDIRECT as usize]), forwarded))
    }
}

/// Problems with a frame sampled at the sink, compared with what the case
/// should deliver.
fn sample_problems(forwarder: Forwarder, sample: &[u8]) -> Vec<String> {
    let Some(parsed) = packet::parse(sample) else {
        return vec!["the sampled frame is not IPv4 UDP (no sample taken?)".into()];
    };
    let (dst, dst_port) = forwarder.expected_dst();
    let (src_mac, dst_mac, ttl) = match forwarder {
        Forwarder::None => (GEN_MAC, SINK_MAC, 64),
        _ => (LB_OUT_MAC, SINK_MAC, 63),
    };
    let ports = FIRST_SOURCE_PORT..FIRST_SOURCE_PORT + GENERATED_FLOWS;
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    expect(
        parsed.dst == dst && parsed.dst_port == dst_port,
        format!(
            "destination {}:{} (expected {dst}:{dst_port})",
            parsed.dst, parsed.dst_port
        ),
    );
    expect(
        parsed.src == GEN_ADDR && ports.contains(&parsed.src_port),
        format!("source {}:{}", parsed.src, parsed.src_port),
    );
    expect(
        parsed.src_mac == src_mac && parsed.dst_mac == dst_mac,
        format!(
            "MACs {} → {}",
            mac_text(parsed.src_mac),
            mac_text(parsed.dst_mac)
        ),
    );
    expect(
        parsed.ttl == ttl,
        format!("TTL {} (expected {ttl})", parsed.ttl),
    );
    expect(
        packet::checksums_valid(sample),
        "invalid checksums".to_owned(),
    );
    problems
}

/// Everything measured for one case.
struct CaseResult {
    forwarder: Forwarder,
    round_packets: u32,
    rounds: Vec<Round>,
    /// Our data path's redirect verdicts and forwarded packets over the
    /// measured rounds.
    ours: Option<(u64, u64)>,
}

impl CaseResult {
    fn spread(&self, measure: impl Fn(&Round) -> f64) -> Spread {
        Spread::of(&self.rounds.iter().map(measure).collect::<Vec<_>>())
    }

    fn total(&self) -> Round {
        self.rounds.iter().fold(Round::default(), |a, r| Round {
            sent: a.sent + r.sent,
            received: a.received + r.received,
            addressed_as_expected: a.addressed_as_expected + r.addressed_as_expected,
            steady: Window::default(),
        })
    }

    fn failures(&self) -> Vec<String> {
        let name = self.forwarder.name();
        let total = self.total();
        let mut failures = Vec::new();
        if total.received < total.sent / 100 {
            failures.push(format!(
                "{name}: the sink received almost nothing ({} of {} frames)",
                total.received, total.sent
            ));
        } else if self.forwarder != Forwarder::None && total.loss() > 0.5 {
            failures.push(format!(
                "{name}: only {:.1} % of the frames reached the sink",
                100.0 * (1.0 - total.loss())
            ));
        }
        if total.addressed_as_expected < total.received - total.received / 100 {
            let (dst, port) = self.forwarder.expected_dst();
            failures.push(format!(
                "{name}: only {} of {} frames at the sink were addressed to {dst}:{port}",
                total.addressed_as_expected, total.received
            ));
        }
        if let Some((redirects, forwarded)) = self.ours
            && (redirects < total.addressed_as_expected || forwarded < redirects)
        {
            failures.push(format!(
                "{name}: data-path counters ({redirects} redirects, {forwarded} forwarded) \
                 do not cover the {} frames the sink saw",
                total.addressed_as_expected
            ));
        }
        failures
    }
}

/// Sends one unmeasured round through the lab (flows enter conntrack,
/// caches warm), checks a frame the sink sampled, and returns the problems
/// found and the frames a round should send to last `round_seconds`.
fn warm_up_and_check(lab: &mut Lab, settings: &Settings) -> (Vec<String>, u32) {
    lab.clear_sink_sample();
    let warm_up = lab.round(settings.warm_up_packets);
    let packets = (warm_up.mpps() * 1e6 * settings.round_seconds)
        .clamp(MIN_ROUND_PACKETS, MAX_ROUND_PACKETS) as u32;
    let name = lab.forwarder.name();
    if warm_up.received == 0 {
        let problem = format!(
            "{name}: warm-up: none of {} frames reached the sink",
            warm_up.sent
        );
        return (vec![problem], packets);
    }
    let problems = sample_problems(lab.forwarder, &lab.sink_sample())
        .into_iter()
        .map(|problem| format!("{name}: frame at the sink: {problem}"))
        .collect();
    (problems, packets)
}

const CASES: [Forwarder; 4] = [
    Forwarder::None,
    Forwarder::Ours(AttachMode::Native),
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

fn report(
    settings: &Settings,
    background: [f64; 2],
    results: &[CaseResult],
    failures: Vec<String>,
) -> Section {
    let floor = results[0].spread(Round::mpps).median;
    let median_of = |forwarder: Forwarder, measure: fn(&Round) -> f64| {
        results
            .iter()
            .find(|r| r.forwarder == forwarder)
            .map_or(0.0, |r| r.spread(measure).median)
    };
    let mut md = format!(
        "64-byte UDP frames over {GENERATED_FLOWS} flows from a live-frames XDP generator, \
         counted by an XDP drop sink; {} rounds per case of one generator run each, sized to \
         last about {} s, rounds interleaved. Rate = frames at the sink / time over the \
         steady part of each round (10–90 % of its frames delivered). Cores busy and \
         CPU-s per million packets are the whole machine's busy time (/proc/stat) over \
         the same part; other load counts too: the machine was {:.2} cores busy just before \
         the rounds and {:.2} just after.\n\n\
         | case | Mpps (median) | min–max | × floor | cores busy | CPU-s per Mpkt | loss % |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        settings.rounds, settings.round_seconds, background[0], background[1]
    );
    let mut cases_json = Vec::new();
    for result in results {
        let rate = result.spread(Round::mpps);
        let cores = result.spread(Round::cores_busy).median;
        let cpu = result.spread(Round::cpu_seconds_per_mpkt).median;
        let loss = 100.0 * result.total().loss();
        md += &format!(
            "| {} | {:.2} | {:.2}–{:.2} | {:.2} | {cores:.2} | {cpu:.3} | {loss:.1} |\n",
            result.forwarder.name(),
            rate.median,
            rate.min,
            rate.max,
            rate.median / floor,
        );
        cases_json.push(serde_json::json!({
            "case": result.forwarder.name(),
            "round_packets": result.round_packets,
            "mpps_median": rate.median, "mpps_min": rate.min, "mpps_max": rate.max,
            "ratio_to_floor": rate.median / floor,
            "cores_busy": cores, "cpu_seconds_per_mpkt": cpu, "loss_percent": loss,
            "our_redirects": result.ours.map(|o| o.0),
            "rounds": result.rounds.iter().map(|r| serde_json::json!({
                "sent": r.sent, "received": r.received,
                "addressed_as_expected": r.addressed_as_expected,
                "steady_received": r.steady.received, "steady_seconds": r.steady.seconds,
                "steady_cpu_seconds": r.steady.cpu_seconds,
            })).collect::<Vec<_>>(),
        }));
    }
    md += "\nNAPI on the lb's receiving veth: our native program (native case); GRO on \
           (skb and nftables cases: generic XDP and kernel forwarding run on the skb GRO \
           hands up). The sink's XDP program is the NAPI the lb's redirect needs.\n";

    let native = median_of(Forwarder::Ours(AttachMode::Native), Round::mpps);
    let skb = median_of(Forwarder::Ours(AttachMode::Skb), Round::mpps);
    let nft = median_of(Forwarder::NftDnat, Round::mpps);
    let native_cpu = median_of(
        Forwarder::Ours(AttachMode::Native),
        Round::cpu_seconds_per_mpkt,
    );
    let nft_cpu = median_of(Forwarder::NftDnat, Round::cpu_seconds_per_mpkt);
    let summary = vec![
        Row {
            measure: "Packet rate through the lab, ours native, Mpps".into(),
            ours: format!("{native:.2}"),
            reference: format!("{floor:.2} (generator → sink, no forwarder)"),
            ratio: format!("{:.2}x", native / floor),
        },
        Row {
            measure: "Packet rate through the lab, ours skb mode, Mpps".into(),
            ours: format!("{skb:.2}"),
            reference: format!("{floor:.2} (generator → sink, no forwarder)"),
            ratio: format!("{:.2}x", skb / floor),
        },
        Row {
            measure: "Packet rate, ours native vs nftables DNAT, Mpps".into(),
            ours: format!("{native:.2}"),
            reference: format!("{nft:.2} (nftables DNAT)"),
            ratio: format!("{:.2}x", native / nft),
        },
        Row {
            measure: "CPU-s per million packets, ours native vs nftables DNAT".into(),
            ours: format!("{native_cpu:.3}"),
            reference: format!("{nft_cpu:.3} (nftables DNAT)"),
            ratio: format!("{:.2}x", native_cpu / nft_cpu),
        },
    ];
    Section {
        title: "Packet rate through the namespace lab",
        markdown: md,
        json: serde_json::json!({
            "rounds": settings.rounds,
            "round_seconds": settings.round_seconds,
            "background_cores_busy": {"before": background[0], "after": background[1]},
            "frame_bytes": FRAME_LEN,
            "flows": GENERATED_FLOWS,
            "cases": cases_json,
        }),
        summary,
        failures,
    }
}
