//! The section's Markdown and summary rows.

use std::time::Duration;

use super::{HAPROXY, LONG_CONNECTIONS, OURS, PACE, REQUEST_TIMEOUT, Switchover, TrialSet};
use crate::bench::{Row, Section, Spread};

fn ms(samples: impl Iterator<Item = Duration>) -> Spread {
    let values: Vec<f64> = samples.map(|d| d.as_secs_f64() * 1000.0).collect();
    Spread::of(&values)
}

pub(super) fn render(sets: &[TrialSet], switchovers: &[Switchover], count: usize) -> Section {
    let mut md = format!(
        "{count} trials per row. A trial kills the primary under load (a new TCP connection every \
         {} ms, each given {} ms; a UDP datagram every {} ms; {LONG_CONNECTIONS} long connections \
         to a second service on the standby, asked every 10 ms). Gap: kill → first answer from the \
         standby. Failed: new connections that failed in that window. Long errors: errors on the \
         long connections (flows on a healthy backend) during the trial. Failback failed: new \
         connections that failed while the primary came back. Both peers: TCP-connect checks, \
         fall 3, rise 2; HAProxy does not proxy UDP. Ours runs with SYN redispatch (its default: a \
         SYN the killed primary refuses goes on to the standby), HAProxy with `retries 2` and \
         `option redispatch`.\n\n\
         | peer | probe interval | TCP gap p50 / p99 ms | UDP gap p50 / p99 ms | failed per trial p50 / p99 (total) | long-connection errors | failback failed (total) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        PACE.as_millis(),
        REQUEST_TIMEOUT.as_millis(),
        PACE.as_millis()
    );
    let mut json = Vec::new();
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for set in sets {
        let tcp = ms(set.trials.iter().filter_map(|t| t.tcp_gap));
        let udp = ms(set.trials.iter().filter_map(|t| t.udp_gap));
        let failed: Vec<f64> = set.trials.iter().map(|t| t.failed as f64).collect();
        let failed_spread = Spread::of(&failed);
        let failed_total: usize = set.trials.iter().map(|t| t.failed).sum();
        let long_errors: usize = set.trials.iter().map(|t| t.long_errors).sum();
        let long_asks: usize = set.trials.iter().map(|t| t.long_asks).sum();
        let failback: usize = set.trials.iter().map(|t| t.failback_failed).sum();
        let udp_text = if udp.count == 0 {
            "–".to_owned()
        } else {
            format!("{:.1} / {:.1}", udp.median, udp.p99)
        };
        md += &format!(
            "| {} | {} ms | {:.1} / {:.1} | {udp_text} | {:.0} / {:.0} ({failed_total}) | {long_errors} of {long_asks} | {failback} |\n",
            set.peer,
            set.interval.as_millis(),
            tcp.median,
            tcp.p99,
            failed_spread.median,
            failed_spread.p99,
        );
        json.push(serde_json::json!({
            "peer": set.peer,
            "probe_interval_ms": set.interval.as_millis() as u64,
            "trials": set.trials.len(),
            "tcp_gap_ms": {"p50": tcp.median, "p99": tcp.p99, "min": tcp.min, "max": tcp.max},
            "udp_gap_ms": {"p50": udp.median, "p99": udp.p99},
            "failed_per_trial": {"p50": failed_spread.median, "p99": failed_spread.p99, "total": failed_total},
            "long_connection_errors": long_errors,
            "long_connection_asks": long_asks,
            "long_connection_errors_first": set.trials.iter().filter_map(|t| t.long_error.clone()).collect::<Vec<_>>(),
            "standby_false_downs": set.standby_false_downs,
            "long_connection_errors_between_trials": set.long_errors_between,
            "failback_failed": failback,
            "decisive_result_to_map_update_us": set.decision_to_flip_us,
            "first_failure_to_map_update_ms": set.detection_ms,
            "samples_tcp_gap_ms": set.trials.iter().map(|t| t.tcp_gap.map(|d| d.as_secs_f64() * 1000.0)).collect::<Vec<_>>(),
        }));
        failures.extend(
            set.failures
                .iter()
                .map(|f| format!("{} {} ms: {f}", set.peer, set.interval.as_millis())),
        );
        if set.peer.starts_with("failover") {
            let peer = sets
                .iter()
                .find(|s| !s.peer.starts_with("failover") && s.interval == set.interval);
            let peer_gap = peer.map(|p| ms(p.trials.iter().filter_map(|t| t.tcp_gap)));
            summary.push(Row {
                measure: format!(
                    "Unplanned failover gap, {} ms checks (fall 3), p50 / p99",
                    set.interval.as_millis()
                ),
                ours: format!("{:.1} / {:.1} ms", tcp.median, tcp.p99),
                reference: peer_gap.map_or("–".into(), |g| {
                    format!("HAProxy backup: {:.1} / {:.1} ms", g.median, g.p99)
                }),
                ratio: peer_gap.map_or("–".into(), |g| format!("{:.2}x", tcp.median / g.median)),
            });
            let peer_failed: Option<usize> = peer.map(|p| p.trials.iter().map(|t| t.failed).sum());
            summary.push(Row {
                measure: format!(
                    "Failed new connections per failover, {} ms checks, p50 (total of {count})",
                    set.interval.as_millis()
                ),
                ours: format!("{:.0} ({failed_total})", failed_spread.median),
                reference: peer.map_or("–".into(), |p| {
                    let f: Vec<f64> = p.trials.iter().map(|t| t.failed as f64).collect();
                    format!(
                        "HAProxy: {:.0} ({})",
                        Spread::of(&f).median,
                        peer_failed.unwrap_or(0)
                    )
                }),
                ratio: "–".into(),
            });
            summary.push(Row {
                measure: format!(
                    "Healthy-backend flows disturbed by failover, {} ms checks",
                    set.interval.as_millis()
                ),
                ours: format!("{long_errors} errors of {long_asks}"),
                reference: peer.map_or("–".into(), |p| {
                    format!(
                        "HAProxy: {} errors of {}",
                        p.trials.iter().map(|t| t.long_errors).sum::<usize>(),
                        p.trials.iter().map(|t| t.long_asks).sum::<usize>()
                    )
                }),
                ratio: "–".into(),
            });
        }
    }
    for set in sets {
        let errors: Vec<String> = set
            .trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.long_error.as_ref().map(|e| format!("trial {i}: {e}")))
            .collect();
        if !errors.is_empty() {
            md += &format!(
                "\nLong-connection errors, {} at {} ms: {}.\n",
                set.peer,
                set.interval.as_millis(),
                errors.join("; ")
            );
        }
        if !set.long_errors_between.is_empty() {
            md += &format!(
                "\nLong-connection errors between trials, {} at {} ms: {}.\n",
                set.peer,
                set.interval.as_millis(),
                set.long_errors_between.join("; ")
            );
        }
    }
    let mut agent_md = String::new();
    for set in sets.iter().filter(|s| !s.decision_to_flip_us.is_empty()) {
        let decision = Spread::of(&set.decision_to_flip_us);
        let detection = Spread::of(&set.detection_ms);
        agent_md += &format!(
            "| {} ms | {} | {} | {} | {:.0} / {:.0} | {:.1} / {:.1} |\n",
            set.interval.as_millis(),
            set.trials.len(),
            set.journal_failovers.unwrap_or(0),
            set.standby_false_downs.unwrap_or(0),
            decision.median,
            decision.p99,
            detection.median,
            detection.p99
        );
        summary.push(Row {
            measure: format!(
                "Agent: decisive probe result → map flip, {} ms checks, p50 / p99",
                set.interval.as_millis()
            ),
            ours: format!("{:.0} / {:.0} µs", decision.median, decision.p99),
            reference: "–".into(),
            ratio: "–".into(),
        });
    }
    if !agent_md.is_empty() {
        md += "\nThe agent's own timing of the same failovers (from its journal): \
               decisive probe result → maps written, and first failed probe → maps written.\n\n\
               | probe interval | trials | failovers in the journal | healthy standby reported down | decisive result → flip p50 / p99 µs | first failure → flip p50 / p99 ms |\n|---:|---:|---:|---:|---:|---:|\n";
        md += &agent_md;
    }
    if !switchovers.is_empty() {
        md += "\nPlanned switchover under the same load, 100 ms checks: ours with `failover \
               switchover web --to ...`, HAProxy by setting the primary's state to `drain` and back \
               to `ready` on its admin socket. New connections from the command until 300 ms after \
               the target answered.\n\n\
               | peer | direction | new connections | failed | command → target answers ms |\n|---|---|---:|---:|---:|\n";
        for s in switchovers {
            md += &format!(
                "| {} | {} | {} | {} | {:.1} |\n",
                s.peer,
                s.direction,
                s.requests,
                s.failed,
                s.took.as_secs_f64() * 1000.0
            );
        }
        let total = |peer: &str| {
            let of_peer = switchovers.iter().filter(|s| s.peer == peer);
            let failed: usize = of_peer.clone().map(|s| s.failed).sum();
            let requests: usize = of_peer.map(|s| s.requests).sum();
            format!("{failed} of {requests}")
        };
        summary.push(Row {
            measure: "Planned switchover and back: failed new connections (target 0)".into(),
            ours: total(OURS),
            reference: format!("HAProxy drain/ready: {}", total(HAPROXY)),
            ratio: "–".into(),
        });
    }
    Section {
        title: "Failover under load",
        markdown: md,
        json: serde_json::json!({
            "sets": json,
            "switchovers": switchovers.iter().map(|s| serde_json::json!({
                "peer": s.peer, "direction": s.direction, "requests": s.requests, "failed": s.failed,
                "took_ms": s.took.as_secs_f64() * 1000.0,
            })).collect::<Vec<_>>(),
        }),
        summary,
        failures,
    }
}
