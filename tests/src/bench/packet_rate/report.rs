//! The section's Markdown, JSON and summary rows.

use failover::AttachMode;

use super::{
    FRAME_LEN, GENERATED_FLOWS, Settings, check::CaseResult, lab::Forwarder, measure::Round,
};
use crate::bench::{Row, Section};

pub(super) fn report(
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
    md += "\nNAPI on the lb's receiving veth: our native program (native case), the \
           reference's (reference case); GRO on \
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
    let vs_floor =
        |measure, ours| Row::compared(measure, ours, floor, "generator → sink, no forwarder", 2);
    let vs_nft = |measure, ours, reference, digits| {
        Row::compared(measure, ours, reference, "nftables DNAT", digits)
    };
    let reference = median_of(Forwarder::ReferenceNat, Round::mpps);
    let summary = vec![
        vs_floor("Packet rate through the lab, ours native, Mpps", native),
        vs_floor(
            "Packet rate through the lab, reference: minimal NAT + redirect, Mpps",
            reference,
        ),
        Row::compared(
            "Packet rate through the lab, ours native vs minimal NAT + redirect, Mpps",
            native,
            reference,
            "minimal NAT + redirect",
            2,
        ),
        vs_floor("Packet rate through the lab, ours skb mode, Mpps", skb),
        vs_nft(
            "Packet rate, ours native vs nftables DNAT, Mpps",
            native,
            nft,
            2,
        ),
        vs_nft(
            "CPU-s per million packets, ours native vs nftables DNAT",
            native_cpu,
            nft_cpu,
            3,
        ),
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
