//! In-band detection at the checks operators commonly run (every 2 s, fall
//! 3), against HAProxy with the same checks plus `observe layer4`,
//! `error-limit 3` and `on-error mark-down` (its passive detection) and
//! `option redispatch`: the primary killed (its port refuses) and the
//! primary blackholed (silent), each under the failover trials' load.
//! Ours: `[services.passive]` (unanswered SYNs after 30 ms, confirmed by
//! probes) and SYN redispatch (the default); HAProxy's `timeout connect`
//! is 30 ms to match.

use std::time::Duration;

use super::{HAPROXY, OURS, Trial, TrialSet, haproxy::haproxy, ours::ours};
use crate::bench::{Row, Section, Spread};

/// How the primary fails in a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// Its server is killed: the host refuses connections (RST).
    Kill,
    /// Everything it sends is dropped by its own routing: silence.
    Blackhole,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "primary killed",
            Self::Blackhole => "primary blackholed",
        }
    }
}

/// The checks of both peers.
pub(super) const CHECKS: Duration = Duration::from_secs(2);
/// How long a SYN may wait (ours) / a connect may take (HAProxy).
pub(super) const SYN_TIMEOUT: Duration = Duration::from_millis(30);

pub fn run(quick: bool) -> Section {
    let count = if quick { 2 } else { 5 };
    let mut sets = Vec::new();
    for fault in [Fault::Kill, Fault::Blackhole] {
        sets.push((fault, ours(CHECKS, count, false, Some(fault)).0));
        sets.push((fault, haproxy(CHECKS, count, false, Some(fault)).0));
    }
    render(&sets, count)
}

fn ms(samples: impl Iterator<Item = Duration>) -> Spread {
    let values: Vec<f64> = samples.map(|d| d.as_secs_f64() * 1000.0).collect();
    Spread::of(&values)
}

/// The bar ours is held to for a fault: (median gap, most failed per trial).
fn bar(fault: Fault) -> (f64, Option<usize>) {
    match fault {
        Fault::Kill => (10.0, Some(1)),
        Fault::Blackhole => (100.0, None),
    }
}

fn render(sets: &[(Fault, TrialSet)], count: usize) -> Section {
    let mut md = format!(
        "{count} trials per row, under the failover trials' load (a new TCP connection every 5 ms, \
         each given 100 ms). Both peers check every {} s, fall 3, rise 2. Gap: the fault → the first \
         answer from the standby (a trial whose standby never answered within 5 s shows as missing). \
         Failed: new connections that failed in that window.\n\n\
         | fault | peer | gap p50 / max ms | failed per trial p50 / max (total) | bar (ours) |\n\
         |---|---|---:|---:|---|\n",
        CHECKS.as_secs()
    );
    let mut json = Vec::new();
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for (fault, set) in sets {
        let gaps = ms(set.trials.iter().filter_map(|t| t.tcp_gap));
        let missing = set.trials.iter().filter(|t| t.tcp_gap.is_none()).count();
        let failed: Vec<f64> = set.trials.iter().map(|t| t.failed as f64).collect();
        let failed_spread = Spread::of(&failed);
        let failed_total: usize = set.trials.iter().map(|t| t.failed).sum();
        let ours = set.peer == OURS;
        let verdict = if ours {
            let (gap_bar, failed_bar) = bar(*fault);
            let gap_met = missing == 0 && gaps.median <= gap_bar;
            let failed_met = failed_bar.is_none_or(|most| failed_spread.max <= most as f64);
            let failed_text = failed_bar.map_or(String::new(), |most| format!(", ≤ {most} failed"));
            format!(
                "{} (p50 ≤ {gap_bar} ms{failed_text})",
                if gap_met && failed_met {
                    "met"
                } else {
                    "missed"
                }
            )
        } else {
            String::new()
        };
        let missing_text = if missing > 0 {
            format!(" ({missing} missing)")
        } else {
            String::new()
        };
        md += &format!(
            "| {} | {} | {:.1} / {:.1}{missing_text} | {:.0} / {:.0} ({failed_total}) | {verdict} |\n",
            fault.name(),
            set.peer,
            gaps.median,
            gaps.max,
            failed_spread.median,
            failed_spread.max,
        );
        json.push(serde_json::json!({
            "fault": fault.name(),
            "peer": set.peer,
            "checks_ms": CHECKS.as_millis() as u64,
            "trials": set.trials.len(),
            "gap_ms": {"p50": gaps.median, "max": gaps.max, "missing": missing},
            "failed_per_trial": {"p50": failed_spread.median, "max": failed_spread.max, "total": failed_total},
            "samples_gap_ms": set.trials.iter().map(|t: &Trial| t.tcp_gap.map(|d| d.as_secs_f64() * 1000.0)).collect::<Vec<_>>(),
            "bar": verdict,
        }));
        // A peer that never fails over is a figure; ours must.
        if ours {
            failures.extend(
                set.failures
                    .iter()
                    .map(|f| format!("{OURS} {}: {f}", fault.name())),
            );
        } else if !set.failures.is_empty() {
            md += &format!(
                "\n{HAPROXY}, {}: {}\n",
                fault.name(),
                set.failures.join("; ")
            );
        }
    }
    for fault in [Fault::Kill, Fault::Blackhole] {
        let gap = |peer: &str| {
            sets.iter()
                .find(|(f, s)| *f == fault && s.peer == peer)
                .map(|(_, s)| ms(s.trials.iter().filter_map(|t| t.tcp_gap)).median)
        };
        if let (Some(ours), Some(theirs)) = (gap(OURS), gap(HAPROXY)) {
            summary.push(Row {
                measure: format!(
                    "{}, checks every {} s: gap p50 (ms)",
                    fault.name(),
                    CHECKS.as_secs()
                ),
                ours: format!("{ours:.1}"),
                reference: format!("{theirs:.1} (HAProxy, observe layer4)"),
                ratio: if theirs > 0.0 {
                    format!("{:.2}x", ours / theirs)
                } else {
                    "–".into()
                },
            });
        }
    }
    Section {
        title: "In-band detection at 2 s checks",
        markdown: md,
        json: serde_json::Value::Array(json),
        summary,
        failures,
    }
}
