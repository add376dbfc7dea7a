//! The trial loop: kill the primary, measure, restore it, over and over.

use std::time::{Duration, Instant};

use failover::lab::load::{Load, Recorded, Sample};

use super::{
    FAILBACK_BOUND, FAILOVER_BOUND, REQUEST_TIMEOUT, Trial,
    in_band::Fault,
    servers::serve,
    traffic::{failed_between, first_answer, wait_answer, wait_long_connections, wait_udp},
};
use crate::{bench::killable::KillableServer, netns::NetNs};

/// What the trial loop needs from a lab: the primary's namespace and its
/// server, which it kills (or blackholes) and brings back.
pub(super) trait FailoverLab {
    fn primary(&mut self) -> (&NetNs, &mut Option<KillableServer>);

    /// How the primary fails.
    fn fault(&self) -> Fault {
        Fault::Kill
    }

    fn kill_primary(&mut self) {
        match self.fault() {
            Fault::Kill => {
                if let Some(server) = self.primary().1.take() {
                    server.kill();
                }
            }
            // Its routing drops all it sends: no RST, no ICMP.
            Fault::Blackhole => self.primary().0.ip(&BLACKHOLE_ADD),
        }
    }

    fn restore_primary(&mut self) {
        match self.fault() {
            Fault::Kill => {
                let (ns, server) = self.primary();
                *server = Some(serve(ns, "primary"));
            }
            Fault::Blackhole => self.primary().0.ip(&BLACKHOLE_DEL),
        }
    }
}

const BLACKHOLE_ADD: [&str; 5] = ["rule", "add", "pref", "10", "blackhole"];
const BLACKHOLE_DEL: [&str; 4] = ["rule", "del", "pref", "10"];

/// What the trial loop measured: the trials, the long-connection errors
/// outside their windows (with when), and problems that fail the bench.
pub(super) struct Outcome {
    pub(super) trials: Vec<Trial>,
    pub(super) long_errors_between: Vec<String>,
    pub(super) failures: Vec<String>,
}

pub(super) fn trials(
    lab: &mut impl FailoverLab,
    traffic: &Load,
    count: usize,
    udp: bool,
) -> Outcome {
    let mut trials = Vec::new();
    let mut failures = Vec::new();
    // The long connections first have to be up (their service's backend may
    // still be coming up when the traffic starts).
    if !wait_long_connections(traffic, FAILBACK_BOUND) {
        failures.push("the long connections never got answers".into());
    }
    let begun = Instant::now();
    // (kill, end of its window, primary restored) of every trial.
    let mut windows: Vec<(Instant, Instant, Instant)> = Vec::new();
    let mut restored = Instant::now();
    for i in 0..count {
        let Some(back) = wait_answer(traffic, "primary", restored, FAILBACK_BOUND) else {
            failures.push(format!("trial {i}: the primary never took new flows again"));
            break;
        };
        if udp && !wait_udp(traffic, "primary", restored, FAILBACK_BOUND) {
            failures.push(format!("trial {i}: the primary never answered UDP again"));
            break;
        }
        let failback_failed = failed_between(&traffic.snapshot().new_flows, restored, back);
        if let Some(previous) = trials.last_mut() {
            let previous: &mut Trial = previous;
            previous.failback_failed = failback_failed;
        }
        std::thread::sleep(Duration::from_millis(150));
        let killed = Instant::now();
        lab.kill_primary();
        let tcp_gap = wait_answer(traffic, "standby", killed, FAILOVER_BOUND);
        let deadline = Instant::now() + FAILOVER_BOUND;
        let mut udp_gap = None;
        while udp && udp_gap.is_none() && Instant::now() < deadline {
            udp_gap = first_answer(&traffic.snapshot().udp, "standby", killed);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Let stragglers finish so they are counted in this trial.
        std::thread::sleep(REQUEST_TIMEOUT + Duration::from_millis(20));
        let settled = Instant::now();
        let Recorded {
            new_flows: tcp,
            long,
            ..
        } = traffic.snapshot();
        let in_window: Vec<&Sample> = long
            .iter()
            .flatten()
            .filter(|s| s.done >= killed && s.started <= settled)
            .collect();
        let trial = Trial {
            tcp_gap: tcp_gap.map(|at| at - killed),
            udp_gap: udp_gap.map(|at| at - killed),
            failed: failed_between(&tcp, killed, tcp_gap.unwrap_or(settled)),
            long_errors: in_window.iter().filter(|s| s.result.is_err()).count(),
            long_asks: in_window.len(),
            long_error: in_window.iter().find_map(|s| {
                s.result.as_ref().err().map(|e| {
                    format!(
                        "{e} ({} ms after the kill)",
                        s.done.saturating_duration_since(killed).as_millis()
                    )
                })
            }),
            failback_failed: 0,
        };
        if trial.tcp_gap.is_none() {
            failures.push(format!("trial {i}: the standby never answered"));
        }
        trials.push(trial);
        lab.restore_primary();
        restored = Instant::now();
        windows.push((killed, settled, restored));
    }
    if let Some(back) = wait_answer(traffic, "primary", restored, FAILBACK_BOUND)
        && let Some(last) = trials.last_mut()
    {
        last.failback_failed = failed_between(&traffic.snapshot().new_flows, restored, back);
    }
    let long_errors_between = traffic
        .snapshot()
        .long
        .iter()
        .flatten()
        .filter(|s| s.done >= begun && s.result.is_err())
        .filter(|s| {
            !windows
                .iter()
                .any(|(killed, settled, _)| s.done >= *killed && s.started <= *settled)
        })
        .map(|s| {
            let error = s
                .result
                .as_ref()
                .err()
                .map(|e| e.detail.clone())
                .unwrap_or_default();
            match windows
                .iter()
                .rposition(|(_, _, restored)| *restored <= s.done)
            {
                Some(i) => format!(
                    "{error} ({} ms after trial {i}'s primary was restored)",
                    (s.done - windows[i].2).as_millis()
                ),
                None => format!("{error} (before the first trial)"),
            }
        })
        .collect();
    Outcome {
        trials,
        long_errors_between,
        failures,
    }
}
