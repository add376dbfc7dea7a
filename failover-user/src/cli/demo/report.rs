//! What the demo prints besides the agent's words: the introduction, a
//! traffic line per window and the summary.

use std::{fmt::Write as _, time::Duration};

use super::{
    BACKEND_PORT, BAR_MAX, FAILBACK_DELAY, HOSTS, REQUEST_EVERY, VIP_PORT, WINDOW,
    client::{Outcome, Record},
    endpoint, probe_interval, vip,
};

/// What the summary reports about one failover.
pub(super) struct Failover {
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) gap: Option<Duration>,
    pub(super) failed: usize,
}

/// What the lab is and how to read the output.
pub(super) fn print_intro() {
    println!();
    println!("the lab:");
    println!(
        "  client ──► VIP {} on the edge host \"lb\" (XDP on its interfaces, agent probing)",
        endpoint(vip(), VIP_PORT)
    );
    for (i, host) in HOSTS.iter().enumerate() {
        let role = match host.tier {
            0 => "preferred",
            1 => "standby",
            _ => "last resort",
        };
        let branch = if i + 1 == HOSTS.len() {
            "└─►"
        } else {
            "├─►"
        };
        println!(
            "      {branch} {:<8} {:<19} tier {} ({role})",
            host.name,
            endpoint(host.addr(), BACKEND_PORT),
            host.tier
        );
    }
    println!(
        "  the agent probes each backend over TCP every {} ms (timeout {} ms); 3 failures in a row",
        probe_interval().as_millis(),
        (probe_interval() / 2).as_millis().max(1)
    );
    println!(
        "  make a backend unhealthy, 2 successes healthy again. New flows go to the best tier"
    );
    println!(
        "  with a healthy backend; failback to a better tier waits {} s (failback delay).",
        FAILBACK_DELAY.as_secs()
    );
    println!("  the XDP program also counts what it sees of each backend's handshakes: three SYNs");
    println!("  refused with RST eject a backend before its probes notice (passive detection)");
    println!(
        "  the client opens a new TCP connection to {} every {} ms; each line below",
        endpoint(vip(), VIP_PORT),
        REQUEST_EVERY.as_millis()
    );
    println!(
        "  covers {} ms: which backend answered those connections, and how many failed",
        WINDOW.as_millis()
    );
    println!("  lines starting with [agent] come from the agent's log");
}

/// One line of live output: who answered the requests that finished in the
/// window ending `t` seconds after the client started, and how many failed.
pub(super) fn print_window(t: f64, window: &[Record]) {
    let mut answers = [0usize; 3];
    let mut failed = 0;
    for record in window {
        match record.outcome {
            Outcome::Answer(i) => answers[i] += 1,
            _ => failed += 1,
        }
    }
    let mut line = format!("  t={t:5.2}s  answers:");
    if answers.iter().all(|&n| n == 0) {
        line.push_str(" none");
    }
    for (i, &n) in answers.iter().enumerate() {
        if n > 0 {
            let _ = write!(
                line,
                " {} {} ({n})",
                HOSTS[i].name,
                "█".repeat(n.min(BAR_MAX))
            );
        }
    }
    let _ = write!(line, "  failed: {failed}");
    println!("{line}");
}

/// `12 (11 connection refused by the dead backend's host, 1 reset)`.
pub(super) fn describe_failures(failed: &[Outcome]) -> String {
    if failed.is_empty() {
        return "0".to_owned();
    }
    let count = |o: Outcome| failed.iter().filter(|&&f| f == o).count();
    let mut parts = Vec::new();
    for (outcome, what) in [
        (
            Outcome::Refused,
            "connection refused by the dead backend's host",
        ),
        (Outcome::Reset, "reset"),
        (Outcome::Timeout, "timed out"),
        (Outcome::Other, "other errors"),
    ] {
        let n = count(outcome);
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    format!("{} ({})", failed.len(), parts.join(", "))
}

/// The failover gaps, the failback and the request totals.
pub(super) fn print_summary(
    records: &[Record],
    failovers: &[Failover],
    failback: Option<Duration>,
) {
    println!();
    println!("summary");
    for f in failovers {
        let gap = f.gap.map_or("no answer".to_owned(), |g| {
            format!("{:.2} s gap", g.as_secs_f64())
        });
        println!(
            "  failover {} -> {}: {gap}, {} failed requests",
            HOSTS[f.from].name, HOSTS[f.to].name, f.failed
        );
    }
    match failback {
        Some(d) => println!(
            "  failback to the primary: {:.2} s after it came back (hold-down {} s + 2 healthy probes)",
            d.as_secs_f64(),
            FAILBACK_DELAY.as_secs()
        ),
        None => println!("  failback to the primary: did not happen"),
    }
    let mut line = format!("  {} requests:", records.len());
    for (i, host) in HOSTS.iter().enumerate() {
        let n = records
            .iter()
            .filter(|r| r.outcome == Outcome::Answer(i))
            .count();
        let _ = write!(line, " {} {n},", host.name);
    }
    let failed = records
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Answer(_)))
        .count();
    let _ = write!(line, " failed {failed}");
    println!("{line}");
    println!(
        "  the failed requests are the connections the data path still sent to a dead backend"
    );
    println!(
        "  before the agent's probes declared it unhealthy (3 probes, {} ms apart)",
        probe_interval().as_millis()
    );
}
