//! Slow start: the primary fails back with `slow_start` set, under a new
//! connection every 5 ms; its share of the new connections in each sixth
//! of the ramp (5 s steps of a 30 s ramp) against the linear ramp's mean
//! over that step.

use std::time::{Duration, Instant};

use super::{PACE, REQUEST_TIMEOUT};
use crate::{
    agent_lab::{
        AgentLab, Failback, HEALTH_PORT, Health, Layout, Options, PRIMARY, Probe, new_flows,
    },
    config::SetPolicies,
};

/// The steps the ramp is cut into.
pub(super) const STEPS: u32 = 6;

pub(super) struct RampRun {
    pub(super) ramp: Duration,
    /// Per step: (the primary's share, the linear ramp's mean, answers).
    pub(super) steps: Vec<(f64, f64, usize)>,
    pub(super) failed: usize,
}

pub(super) fn run(ramp: Duration) -> RampRun {
    let layout = Layout::primary_standby().slow_start(ramp);
    let options = Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let lab = AgentLab::start_layout(options, layout, |_, config| config);
    lab.health[PRIMARY].set(Health::Down);
    let moved = lab.sample_until("standby", Duration::from_secs(5));
    assert!(
        moved.reached().is_some(),
        "no failover: {}",
        moved.summary()
    );
    let load = new_flows(&lab.client, PACE, REQUEST_TIMEOUT);
    lab.health[PRIMARY].set(Health::Up);
    lab.wait_log("slow start: its share", Duration::from_secs(5));
    let started = Instant::now();
    std::thread::sleep(ramp);
    let recorded = load.finish();
    let step = ramp / STEPS;
    let steps = (0..STEPS)
        .map(|s| {
            let (from, to) = (started + step * s, started + step * (s + 1));
            let answers: Vec<&String> = recorded
                .new_flows
                .iter()
                .filter(|sample| (from..to).contains(&sample.started))
                .filter_map(|sample| sample.result.as_ref().ok())
                .collect();
            let on_primary = answers.iter().filter(|a| **a == "primary").count();
            let share = on_primary as f64 / answers.len().max(1) as f64;
            (
                share,
                (f64::from(s) + 0.5) / f64::from(STEPS),
                answers.len(),
            )
        })
        .collect();
    let failed = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= started && s.result.is_err())
        .count();
    RampRun {
        ramp,
        steps,
        failed,
    }
}
