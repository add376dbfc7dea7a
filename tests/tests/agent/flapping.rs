//! A flapping primary does not flap traffic.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{
    AgentLab, Failback, HEALTH_PORT, Health, Options, PRIMARY, Probe, new_flows,
};

use crate::switch::SAMPLE_BOUND;

#[test]
fn flapping_primary_does_not_flap_traffic() {
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_secs(1)),
    });
    let sampler = new_flows(
        &lab.client,
        Duration::from_millis(20),
        Duration::from_millis(500),
    );
    let health = &lab.health[PRIMARY];
    let started = Instant::now();
    // A: down and up for 150 ms each, shorter than fall × interval: the
    // primary should never even be declared unhealthy.
    for _ in 0..8 {
        health.set(Health::Down);
        std::thread::sleep(Duration::from_millis(150));
        health.set(Health::Up);
        std::thread::sleep(Duration::from_millis(150));
    }
    let phase_a_flips = lab.log_lines("backend unhealthy").len();
    // B: down 450 ms (enough to fail), up 350 ms (enough to rise, far less
    // than the 1 s failback delay): health flips, traffic must not follow.
    for _ in 0..4 {
        health.set(Health::Down);
        std::thread::sleep(Duration::from_millis(450));
        health.set(Health::Up);
        std::thread::sleep(Duration::from_millis(350));
    }
    let flapping_ended = Instant::now();
    // The primary now stays up: after rise and the failback delay, new
    // flows go back to it.
    let back = lab.sample_until("primary", SAMPLE_BOUND);
    let recorded = sampler.finish();

    let during: Vec<&String> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started <= flapping_ended)
        .filter_map(|s| s.result.as_ref().ok())
        .collect();
    let during_switches = during.windows(2).filter(|w| w[0] != w[1]).count();
    let failures: Vec<&failover_tests::load::Failed> = recorded
        .new_flows
        .iter()
        .filter_map(|s| s.result.as_ref().err())
        .collect();
    let unhealthy = lab.log_lines("backend unhealthy");
    let switched = lab.log_lines("new flows switched");
    let on_standby = during.iter().filter(|n| **n == "standby").count();
    eprintln!(
        "flapping {:?}: {} new flows sampled ({} on the standby), {during_switches} switches of their destination; \
         primary declared unhealthy {} times ({phase_a_flips} in phase A); agent switched new flows {} times; \
         back on the primary {:?} after the flapping",
        flapping_ended - started,
        during.len(),
        on_standby,
        unhealthy.len(),
        switched.len(),
        back.reached(),
    );
    assert_eq!(
        phase_a_flips,
        0,
        "down periods shorter than fall × interval declared the primary unhealthy\n{}",
        lab.diag()
    );
    assert!(
        failures.is_empty(),
        "the service itself never failed, yet: {failures:?}\n{}",
        lab.diag()
    );
    assert!(
        during.len() > 100,
        "too few samples ({})\n{}",
        during.len(),
        lab.diag()
    );
    assert!(
        unhealthy.len() >= 2,
        "phase B should have flipped the primary's health repeatedly\n{}",
        lab.diag()
    );
    assert!(
        during_switches <= 1,
        "new flows switched {during_switches} times while the primary flapped\n{}",
        lab.diag()
    );
    assert!(
        back.reached().is_some(),
        "new flows did not return to the primary once it was stable: {}\n{}",
        back.summary(),
        lab.diag()
    );
    assert!(
        switched.len() <= 2,
        "the agent switched new flows {} times: {switched:#?}\n{}",
        switched.len(),
        lab.diag()
    );
}
