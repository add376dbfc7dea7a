//! Slow start (`slow_start = "6s"`): after a failback the primary's share
//! of new connections ramps up linearly while the standby keeps the rest,
//! status shows the share, and a connection established on the standby
//! stays there throughout.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{
        AgentLab, Failback, HEALTH_PORT, Health, Layout, Options, PRIMARY, Probe, new_flows,
    },
    config::SetPolicies,
    servers::ask,
};

const RAMP: Duration = Duration::from_secs(6);
/// Windows the ramp is cut into for the shares.
const WINDOWS: u32 = 4;

#[test]
fn a_failing_back_primary_takes_a_linearly_growing_share_of_new_connections() {
    let layout = Layout::primary_standby().slow_start(RAMP);
    let options = Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let lab = AgentLab::start_layout(options, layout, |_, config| config);
    lab.health[PRIMARY].set(Health::Down);
    let moved = lab.sample_until("standby", Duration::from_secs(5));
    assert!(moved.reached().is_some(), "{}", moved.summary());
    let mut kept = lab.connect();
    assert_eq!(ask(&mut kept).unwrap(), "standby");

    lab.health[PRIMARY].set(Health::Up);
    lab.wait_log("slow start: its share", Duration::from_secs(5));
    let started = Instant::now();
    let load = new_flows(
        &lab.client,
        Duration::from_millis(5),
        Duration::from_millis(500),
    );
    std::thread::sleep(RAMP / 2);
    let status = lab.status();
    let primary = failover_tests::status::backend(&status, "web", "primary");
    let share = primary
        .slow_start_share
        .expect("ramping: a share in status");
    assert!((0.3..0.8).contains(&share), "half-way: {share}");
    std::thread::sleep(RAMP / 2);
    let recorded = load.finish();

    let window = RAMP / WINDOWS;
    let mut shares = Vec::new();
    for w in 0..WINDOWS {
        let (from, to) = (started + window * w, started + window * (w + 1));
        let answers: Vec<&String> = recorded
            .new_flows
            .iter()
            .filter(|s| (from..to).contains(&s.started))
            .filter_map(|s| s.result.as_ref().ok())
            .collect();
        let on_primary = answers.iter().filter(|a| **a == "primary").count();
        shares.push(on_primary as f64 / answers.len().max(1) as f64);
    }
    let failed = recorded
        .new_flows
        .iter()
        .filter(|s| s.result.is_err())
        .count();
    eprintln!(
        "slow start over {RAMP:?}: primary's share per {window:?} window {shares:.2?}; {failed} failed"
    );
    for (w, share) in shares.iter().enumerate() {
        // The linear ramp's mean over the window.
        let want = (w as f64 + 0.5) / f64::from(WINDOWS);
        assert!(
            (share - want).abs() < 0.2,
            "window {w}: {share:.2} instead of about {want:.2}: {shares:.2?}\n{}",
            lab.diag()
        );
    }
    assert_eq!(failed, 0);
    lab.wait_log("slow start done", Duration::from_secs(3));
    let after = lab.sample(10, Duration::from_millis(10));
    assert_eq!(after.answered_by("primary"), 10, "{}", after.summary());
    assert_eq!(
        ask(&mut kept).unwrap(),
        "standby",
        "the kept connection moved"
    );
}
