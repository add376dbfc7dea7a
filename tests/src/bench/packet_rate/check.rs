//! Correctness of a case: the frame sampled at the sink, delivery, and our
//! data path's counters.

use super::{
    FIRST_SOURCE_PORT, GEN_ADDR, GEN_MAC, GENERATED_FLOWS, LB_OUT_MAC, SINK_MAC, Settings,
    lab::{Forwarder, Lab, mac_text},
    measure::{MAX_ROUND_PACKETS, MIN_ROUND_PACKETS, Round, Window},
};
use crate::{bench::Spread, packet};

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
pub(super) struct CaseResult {
    pub(super) forwarder: Forwarder,
    pub(super) round_packets: u32,
    pub(super) rounds: Vec<Round>,
    /// Our data path's redirect verdicts and forwarded packets over the
    /// measured rounds.
    pub(super) ours: Option<(u64, u64)>,
}

impl CaseResult {
    pub(super) fn spread(&self, measure: impl Fn(&Round) -> f64) -> Spread {
        Spread::of(&self.rounds.iter().map(measure).collect::<Vec<_>>())
    }

    pub(super) fn total(&self) -> Round {
        self.rounds.iter().fold(Round::default(), |a, r| Round {
            sent: a.sent + r.sent,
            received: a.received + r.received,
            addressed_as_expected: a.addressed_as_expected + r.addressed_as_expected,
            steady: Window::default(),
        })
    }

    pub(super) fn failures(&self) -> Vec<String> {
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
pub(super) fn warm_up_and_check(lab: &mut Lab, settings: &Settings) -> (Vec<String>, u32) {
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
