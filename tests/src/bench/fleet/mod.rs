//! The fleet (`fleet_lab`): two edge hosts behind a router running BIRD
//! (BGP, BFD 100 ms × 3, ECMP with an L4 hash), under a new connection
//! every 5 ms and long-lived connections spread over both hosts by the
//! router. Trials: an edge host gone (its agent killed, its links down) or
//! silent (only BFD tells), then back; then `failover host drain` and
//! undrain. keepalived is not
//! compared: its failover moves a VIP address by VRRP between hosts and
//! needs IPVS (absent here) to forward; with our data path the VIP is
//! never an address of the hosts, so there is nothing for VRRP to move.

mod trials;

use self::trials::{Away, BigRound, DrainRun, HostTrial, Pinned};
use crate::bench::{Row, Section, Spread};

/// The bars.
const GAP_BAR_MS: f64 = 400.0;
const SURVIVAL_BAR: f64 = 0.999;

pub fn run(quick: bool) -> Section {
    let (count, long) = if quick { (1, 100) } else { (5, 1000) };
    let (hosts, drain, pinned, big) = trials::run(count, long);
    let mut section = render(&hosts, &drain, &pinned, long);
    section.markdown += &big_round_text(&big);
    section.json["big_round"] = serde_json::json!({
        "flows_written": big.written,
        "pinned": big.pinned,
        "walk_ms": big.walk_ms,
        "walk_ns_per_entry": big.walk_ms * 1e6 / f64::from(big.written),
        "round_bytes_per_peer": round_bytes(big.pinned),
        "period_ms": big.period_ms,
        "all_copied_s": big.all_copied.map(|d| d.as_secs_f64()),
    });
    if big.all_copied.is_none() {
        section.failures.push(format!(
            "fleet: edge 1 never held copies of edge 0's {} pinned flows",
            big.pinned
        ));
    }
    if pinned.connections.len() * 4 < long {
        section.failures.push(format!(
            "fleet: only {} of {long} long connections were pinned off the table: the trials did not measure pinned flows",
            pinned.connections.len()
        ));
    }
    // A trial is a measurement only if the fault and the long connections
    // were real.
    for (i, trial) in hosts.iter().enumerate() {
        if trial.withdrawn.is_none() {
            section.failures.push(format!(
                "fleet trial {i}: the router never withdrew the host"
            ));
        }
        if trial.long_alive * 100 < long * 99 {
            section.failures.push(format!(
                "fleet trial {i}: only {} of {long} long connections were alive before the fault",
                trial.long_alive
            ));
        }
    }
    section
}

fn render(trials: &[HostTrial], drain: &DrainRun, pinned: &Pinned, long: usize) -> Section {
    let mut failures = Vec::new();
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let mut md = format!(
        "The client opens a new connection every 5 ms (each given 1 s) and keeps {long} \
         long-lived connections, each asking every second, spread over both edge hosts by the \
         router's L4 hash. A trial takes edge host 0 away — gone (its agent SIGKILLed, its links \
         down) or silent (links up, nothing reaching it or leaving it: only BFD, 100 ms × 3, at the \
         router and at the backends tells) — waits 3 s, brings it back and waits until the router \
         uses it again. Gap: from the fault to the start of the last new connection that failed \
         before the host was back (0 if none did). Survived: long connections alive before the \
         fault that answered every ask started while the host was away; reset on return: new \
         connections and asks that failed after it was back.\n\n\
         | trial | host | router withdrew after | gap ms | new connections failed | long connections survived | of them pinned | announced again after | reset on return |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for (i, t) in trials.iter().enumerate() {
        md += &format!(
            "| {i} | {} | {} | {:.1} | {} | {} of {} | {} of {} | {} | {} |\n",
            t.away.name(),
            t.withdrawn.map_or("never".into(), |d| format!(
                "{:.1} ms",
                d.as_secs_f64() * 1000.0
            )),
            t.gap.as_secs_f64() * 1000.0,
            t.failed,
            t.long_alive - t.long_broken,
            t.long_alive,
            t.pinned_alive - t.pinned_broken,
            t.pinned_alive,
            t.returned
                .map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            t.reset_on_return,
        );
        if t.returned.is_none() {
            failures.push(format!(
                "fleet trial {i}: the host was never announced again"
            ));
        }
    }
    md += &pinned_table(pinned, long);
    md += "\n| bar | figure | verdict |\n|---|---|---|\n";
    let mut json_kinds = serde_json::Map::new();
    let mut summary = Vec::new();
    let row = |measure: String, ours: String, bar: String| Row {
        measure,
        ours,
        reference: bar,
        ratio: "–".into(),
    };
    for away in [Away::Gone, Away::Silent] {
        let of_kind: Vec<&HostTrial> = trials.iter().filter(|t| t.away == away).collect();
        let gaps: Vec<f64> = of_kind
            .iter()
            .map(|t| t.gap.as_secs_f64() * 1000.0)
            .collect();
        let gap = Spread::of(&gaps);
        let alive: usize = of_kind.iter().map(|t| t.long_alive).sum();
        let broken: usize = of_kind.iter().map(|t| t.long_broken).sum();
        let survival = 1.0 - broken as f64 / alive.max(1) as f64;
        let reset: usize = of_kind.iter().map(|t| t.reset_on_return).sum();
        let failed: usize = of_kind.iter().map(|t| t.failed).sum();
        let gap_met = gap.median <= GAP_BAR_MS && !of_kind.is_empty();
        let survival_met = survival >= SURVIVAL_BAR;
        md += &format!(
            "| host {}: median gap for new connections ≤ {GAP_BAR_MS} ms | {:.1} ms (max {:.1}); {failed} failed in {} trials | {} |\n\
             | host {}: ≥ 99.9 % of established connections survive | {:.3} % ({broken} of {alive} broke) | {} |\n\
             | host {} returns: 0 connections reset | {reset} | {} |\n",
            away.name(),
            gap.median,
            gap.max,
            of_kind.len(),
            verdict(gap_met),
            away.name(),
            survival * 100.0,
            verdict(survival_met),
            away.name(),
            verdict(reset == 0),
        );
        json_kinds.insert(
            format!("{away:?}").to_lowercase(),
            serde_json::json!({
                "gap_ms": {"p50": gap.median, "max": gap.max},
                "failed": failed,
                "survival": survival,
                "broken": broken,
                "alive": alive,
                "reset_on_return": reset,
                "bars": {"gap": verdict(gap_met), "survival": verdict(survival_met), "return": verdict(reset == 0)},
            }),
        );
        summary.push(row(
            format!(
                "Fleet: edge host {}: new connections' gap p50; long connections survived",
                away.name()
            ),
            format!("{:.1} ms; {:.3} % of {alive}", gap.median, survival * 100.0),
            format!(
                "bar: ≤ {GAP_BAR_MS} ms, ≥ 99.9 % ({}, {})",
                verdict(gap_met),
                verdict(survival_met)
            ),
        ));
    }
    let drain_met = drain.failed == 0 && drain.safe_to_stop.is_some();
    let pinned_alive: usize = trials.iter().map(|t| t.pinned_alive).sum();
    let pinned_broken: usize = trials.iter().map(|t| t.pinned_broken).sum();
    let pinned_survival = 1.0 - pinned_broken as f64 / pinned_alive.max(1) as f64;
    let pinned_survived = pinned.connections.len() * 4 >= long && pinned_survival >= SURVIVAL_BAR;
    md += &format!(
        "| `failover host drain`: 0 failed, reports done | {} of {} new connections and asks failed; {} | {} |\n\
         | connections pinned on a standby after a failback survive (≥ 99.9 %) | {:.3} % ({pinned_broken} of {pinned_alive} broke, over all trials; {} of the {long} long connections were pinned) | {} |\n",
        drain.failed,
        drain.connections,
        drain
            .safe_to_stop
            .map_or("never said safe to stop".into(), |d| format!(
                "\"safe to stop\" after {:.1} s",
                d.as_secs_f64()
            )),
        verdict(drain_met),
        pinned_survival * 100.0,
        pinned.connections.len(),
        verdict(pinned_survived),
    );
    summary.push(row(
        "Fleet: failed connections in a host drain".into(),
        drain.failed.to_string(),
        format!("bar: 0 ({})", verdict(drain_met)),
    ));
    summary.push(row(
        "Fleet: long connections pinned off the table, shared by [sync]".into(),
        format!(
            "{} of {long} pinned; {:.3} % survived",
            pinned.connections.len(),
            pinned_survival * 100.0
        ),
        format!("bar: ≥ 99.9 % ({})", verdict(pinned_survived)),
    ));
    let json = serde_json::json!({
        "pinned": pinned.views.iter().zip(&pinned.entries).map(|(v, entries)| serde_json::json!({
            "pinned_flows": v.pinned_flows,
            "flow_entries": entries,
            "walk_ms": v.last_walk_ms,
            "round_bytes_per_peer": round_bytes(v.pinned_flows),
            "interval_ms": v.interval_ms,
            "learned_from_peers": v.received.get("learned").copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
        "trials": trials.iter().map(|t| serde_json::json!({
            "away": t.away.name(),
            "withdrawn_ms": t.withdrawn.map(|d| d.as_secs_f64() * 1000.0),
            "gap_ms": t.gap.as_secs_f64() * 1000.0,
            "failed": t.failed,
            "long_alive": t.long_alive,
            "long_broken": t.long_broken,
            "pinned_alive": t.pinned_alive,
            "pinned_broken": t.pinned_broken,
            "returned_s": t.returned.map(|d| d.as_secs_f64()),
            "reset_on_return": t.reset_on_return,
        })).collect::<Vec<_>>(),
        "by_fault": json_kinds,
        "drain": {
            "connections_and_asks": drain.connections,
            "failed": drain.failed,
            "safe_to_stop_s": drain.safe_to_stop.map(|d| d.as_secs_f64()),
            "bar": verdict(drain_met),
        },
    });
    Section {
        title: "A fleet of edge hosts: one gone or silent, back, drained",
        markdown: md,
        json,
        summary,
        failures,
    }
}

/// Bytes one round of `pinned` flows takes on the wire to one peer (UDP
/// payloads plus IPv4 and UDP headers).
fn round_bytes(pinned: u64) -> u64 {
    use failover::flow_sync::wire::{HEADER_BYTES, RECORD_BYTES, RECORDS_PER_DATAGRAM};
    let datagrams = pinned.div_ceil(RECORDS_PER_DATAGRAM as u64).max(1);
    pinned * RECORD_BYTES as u64 + datagrams * (HEADER_BYTES as u64 + 28)
}

/// Who pinned what before the trials, and what sharing it cost.
fn pinned_table(pinned: &Pinned, long: usize) -> String {
    let mut md = format!(
        "\nBefore the trials, the {long} long connections were made while backend0 was in \
         maintenance on both hosts (backend1 took them), then backend0 came back: the connections \
         the tables name backend0 for stay on backend1, pinned off the table. Each host sends \
         those it carries to the other every interval (`[sync]`), which writes them into its flow \
         table. Cost per host:\n\n\
         | edge host | pinned flows | flow-table entries | walk of the table | bytes per round per peer | at its interval | learned from its peer |\n\
         |---|---:|---:|---:|---:|---:|---:|\n"
    );
    for (i, (v, entries)) in pinned.views.iter().zip(&pinned.entries).enumerate() {
        let bytes = round_bytes(v.pinned_flows);
        md += &format!(
            "| {i} | {} | {entries} | {:.2} ms | {bytes} | {:.1} KB/s every {} ms | {} |\n",
            v.pinned_flows,
            v.last_walk_ms,
            bytes as f64 / 1000.0 / (v.interval_ms as f64 / 1000.0),
            v.interval_ms,
            v.received.get("learned").copied().unwrap_or(0),
        );
    }
    md
}

/// What a round of a big table costs.
fn big_round_text(big: &BigRound) -> String {
    let bytes = round_bytes(big.pinned);
    format!(
        "\nA bigger table: {} flows written into edge 0's flow table, all on backend1, so that \
         {} are pinned off the table. Edge 0's walk took {:.1} ms ({:.2} µs an entry), so its rounds \
         come every {} ms (at least five walks apart: at most a fifth of a core); a round is {:.2} MB \
         to each peer ({} datagrams). Edge 1 held a copy of every one {} after they were written (found by walking its table with `inspect flows`, itself about a second).\n",
        big.written,
        big.pinned,
        big.walk_ms,
        big.walk_ms * 1000.0 / f64::from(big.written),
        big.period_ms,
        bytes as f64 / 1e6,
        big.pinned
            .div_ceil(failover::flow_sync::wire::RECORDS_PER_DATAGRAM as u64),
        big.all_copied
            .map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
    )
}
