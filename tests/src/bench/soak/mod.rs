//! The in-band detection's long bars: ten minutes of benign resets, refused
//! ports and stray ICMP that must eject nothing ([`benign`]), ten minutes
//! of a primary flapping every 2 s that flap damping must hold to a few
//! changes ([`flapping`]), both at once in labs of their own, then the
//! slow-start ramp's shares in 5 s steps ([`ramp`]). `--quick` runs each
//! for seconds: the checks hold, the figures mean little.

mod benign;
mod flapping;
mod journal;
mod noise;
mod ramp;

use std::time::Duration;

use self::{benign::BenignRun, flapping::FlappingRun, ramp::RampRun};
use crate::bench::{Row, Section};

/// The web services' checks in the benign lab (the common setting).
const CHECKS: Duration = Duration::from_secs(2);
/// Passive detection as sensitive as the in-band section's.
const SYN_TIMEOUT: Duration = Duration::from_millis(30);
/// A new connection every 5 ms, each given 100 ms.
const PACE: Duration = Duration::from_millis(5);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(100);
/// The bars.
const MOST_SWITCHES: usize = 6;
const MOST_FAILED: f64 = 0.001;
const RAMP_TOLERANCE: f64 = 0.10;

pub fn run(quick: bool) -> Section {
    let (soak, ramp) = if quick {
        (Duration::from_secs(20), Duration::from_secs(12))
    } else {
        (Duration::from_secs(600), Duration::from_secs(30))
    };
    let (benign, flapping) = std::thread::scope(|scope| {
        let benign = scope.spawn(|| benign::run(soak));
        let flapping = scope.spawn(|| flapping::run(soak));
        (join(benign), join(flapping))
    });
    let ramp = ramp::run(ramp);
    render(&benign, &flapping, &ramp)
}

/// A thread's result, or its panic carried on.
fn join<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// A run's length for the report: seconds, or minutes once long.
fn span(length: Duration) -> String {
    let seconds = length.as_secs_f64();
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

fn render(benign: &BenignRun, flapping: &FlappingRun, ramp: &RampRun) -> Section {
    let mut failures = Vec::new();
    let mut md = String::new();

    let false_ejections = benign.web_downs.len() + benign.web_switches.len();
    let benign_met = false_ejections == 0;
    md += &format!(
        "### No false ejection ({})\n\n\
         The web service (primary and standby, checks every {} s, passive detection with \
         `syn_timeout = \"{} ms\"` and `unanswered = 3`, redispatch) takes a new connection every \
         {} ms while, at once: clients reset connections after their answer and abort handshakes; \
         idle connections are reset by their server; a service on the same hosts whose port \
         nothing serves refuses connections; ICMP port unreachable naming the primary arrives \
         forged from the client's side and from the standby's host.\n\n\
         | made | count |\n|---|---:|\n\
         | client resets after an answer | {} |\n| handshakes aborted | {} |\n\
         | idle connections reset by the server | {} |\n| refused connections (other service) | {} |\n\
         | ICMP errors from hosts other than the backend named | {} |\n\n\
         | measure | figure | bar |\n|---|---:|---|\n\
         | web's backends reported down, web's switches | {}, {} | {} (0) |\n\
         | web's new connections failed | {} of {} |  |\n\
         | control: the refused service's backends ejected | {} | ≥ 1 (the evidence reached the agent) |\n",
        span(benign.length),
        CHECKS.as_secs(),
        SYN_TIMEOUT.as_millis(),
        PACE.as_millis(),
        benign.noise.client_resets,
        benign.noise.handshake_aborts,
        benign.noise.server_resets,
        benign.noise.refused,
        benign.noise.icmp_errors,
        benign.web_downs.len(),
        benign.web_switches.len(),
        verdict(benign_met),
        benign.failed,
        benign.new_connections,
        benign.refused_downs,
    );
    for line in benign.web_downs.iter().chain(&benign.web_switches) {
        md += &format!("\n- false: {line}");
    }
    if benign.refused_downs == 0 {
        failures.push("soak: the refused service was never ejected: the lab's evidence did not reach the agent".into());
    }
    let noise = &benign.noise;
    if [
        noise.client_resets,
        noise.handshake_aborts,
        noise.server_resets,
        noise.refused,
        noise.icmp_errors,
    ]
    .contains(&0)
    {
        failures.push(format!("soak: a kind of noise was never made: {noise:?}"));
    }

    let failed_share = percent(flapping.failed, flapping.new_connections);
    let flapping_met =
        flapping.switches.len() <= MOST_SWITCHES && failed_share <= MOST_FAILED * 100.0;
    md += &format!(
        "\n\n### A primary flapping every {} s ({})\n\n\
         Its server is killed and restarted every {} s ({} flaps) under a new connection every {} ms; \
         checks every 200 ms, fall 3, rise 2, failback after 200 ms, passive detection, redispatch, \
         and `[services.damping]` at its defaults.\n\n\
         | measure | figure | bar |\n|---|---:|---|\n\
         | changes of who takes new flows | {} | {} (≤ {MOST_SWITCHES}) |\n\
         | suppressions | {} |  |\n\
         | failed new connections | {} of {} ({failed_share:.3} %) | ≤ {:.1} % |\n\
         | primary takes new flows again after its last restart | {} |  |\n",
        flapping::FLAP.as_secs(),
        span(flapping.length),
        flapping::FLAP.as_secs(),
        flapping.flaps,
        PACE.as_millis(),
        flapping.switches.len(),
        verdict(flapping_met),
        flapping.suppressions,
        flapping.failed,
        flapping.new_connections,
        MOST_FAILED * 100.0,
        flapping
            .back_after
            .map_or("not within 90 s".into(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
    );
    for line in &flapping.switches {
        md += &format!("\n- {line}");
    }
    if flapping.flaps == 0 {
        failures.push("soak: the primary never flapped".into());
    }

    let worst = ramp
        .steps
        .iter()
        .map(|(share, want, _)| (share - want).abs())
        .fold(0.0, f64::max);
    let ramp_met = worst <= RAMP_TOLERANCE && ramp.steps.iter().all(|(_, _, n)| *n > 0);
    md += &format!(
        "\n\n### Slow start over {} s\n\n\
         The primary fails back with `slow_start = \"{}s\"` under a new connection every {} ms; its share \
         of the new connections answered in each {:.0} s step, against the linear ramp's mean over \
         the step (bar: within ±{:.0} points at every step: {}). {} new connections failed.\n\n\
         | step | share | linear | answered |\n|---|---:|---:|---:|\n",
        ramp.ramp.as_secs(),
        ramp.ramp.as_secs(),
        PACE.as_millis(),
        ramp.ramp.as_secs_f64() / f64::from(ramp::STEPS),
        RAMP_TOLERANCE * 100.0,
        verdict(ramp_met),
        ramp.failed,
    );
    let step = ramp.ramp.as_secs_f64() / f64::from(ramp::STEPS);
    for (i, (share, want, n)) in ramp.steps.iter().enumerate() {
        md += &format!(
            "| {:.0}–{:.0} s | {share:.3} | {want:.3} | {n} |\n",
            step * i as f64,
            step * (i + 1) as f64
        );
    }

    let json = serde_json::json!({
        "benign": {
            "seconds": benign.length.as_secs_f64(),
            "noise": benign.noise.json(),
            "web_backends_down": benign.web_downs,
            "web_switches": benign.web_switches,
            "refused_service_ejections": benign.refused_downs,
            "new_connections": benign.new_connections,
            "failed": benign.failed,
            "bar": verdict(benign_met),
        },
        "flapping": {
            "seconds": flapping.length.as_secs_f64(),
            "flaps": flapping.flaps,
            "switches": flapping.switches,
            "suppressions": flapping.suppressions,
            "new_connections": flapping.new_connections,
            "failed": flapping.failed,
            "back_after_s": flapping.back_after.map(|d| d.as_secs_f64()),
            "bar": verdict(flapping_met),
        },
        "slow_start": {
            "ramp_s": ramp.ramp.as_secs_f64(),
            "steps": ramp.steps.iter().map(|(share, want, n)| serde_json::json!({"share": share, "linear": want, "answered": n})).collect::<Vec<_>>(),
            "worst_deviation": worst,
            "failed": ramp.failed,
            "bar": verdict(ramp_met),
        },
    });
    let bar_row = |measure: String, ours: String, bar: String| Row {
        measure,
        ours,
        reference: bar,
        ratio: "–".into(),
    };
    let summary = vec![
        bar_row(
            format!(
                "benign resets, refused port, stray ICMP for {}: false ejections",
                span(benign.length)
            ),
            false_ejections.to_string(),
            format!("bar: 0 ({})", verdict(benign_met)),
        ),
        bar_row(
            format!(
                "primary flapping every {} s for {}: changes of who takes new flows, failed",
                flapping::FLAP.as_secs(),
                span(flapping.length)
            ),
            format!("{}, {failed_share:.3} %", flapping.switches.len()),
            format!(
                "bar: ≤ {MOST_SWITCHES}, ≤ 0.1 % ({})",
                verdict(flapping_met)
            ),
        ),
        bar_row(
            format!(
                "slow start {} s: worst step's share off the linear ramp",
                ramp.ramp.as_secs()
            ),
            format!("{worst:.3}"),
            format!("bar: ≤ {RAMP_TOLERANCE:.2} ({})", verdict(ramp_met)),
        ),
    ];
    Section {
        title: "In-band detection over ten minutes: false ejections, flapping, slow start",
        markdown: md,
        json,
        summary,
        failures,
    }
}
