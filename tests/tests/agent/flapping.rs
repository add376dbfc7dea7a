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

/// Flap damping (`[services.damping]`, half-life 5 s): the primary fails
/// three times within two seconds and is suppressed — healthy, yet the
/// standby keeps new flows, status and the log say why, and a restarted
/// agent keeps it so — until its penalty decays below reuse; then it takes
/// them again.
#[test]
fn a_flapping_primary_is_suppressed_until_its_penalty_decays() {
    let layout = failover_tests::agent_lab::Layout::primary_standby();
    let options = Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |_, config| {
        config.with_service("web", |mut web| {
            web.damping = Some(failover_tests::config::DampingToml {
                half_life: Some(Duration::from_secs(5)),
                max_suppress: Some(Duration::from_secs(10)),
                ..Default::default()
            });
            web
        })
    });
    let health = &lab.health[PRIMARY];
    for _ in 0..3 {
        health.set(Health::Down);
        std::thread::sleep(Duration::from_millis(500));
        health.set(Health::Up);
        std::thread::sleep(Duration::from_millis(400));
    }
    lab.wait_log("backend suppressed", Duration::from_secs(3));
    let suppressed_at = Instant::now();
    // Healthy again, but suppressed: the standby keeps new flows.
    let status = lab.status();
    let primary = failover_tests::status::backend(&status, "web", "primary");
    assert!(primary.healthy, "{status:#?}");
    assert_eq!(primary.admin.as_deref(), Some("suppressed (flapping)"));
    assert!(
        primary.suppressed_for_s.is_some_and(|s| s > 0.5),
        "{status:#?}"
    );
    assert!(
        primary.damping_penalty.is_some_and(|p| p > 1000.0),
        "{status:#?}"
    );
    let held = lab.sample(10, Duration::from_millis(20));
    assert_eq!(held.answered_by("standby"), 10, "{}", held.summary());
    // A restarted agent resumes the suppression (FO_TIMERS).
    lab.stop_agent();
    lab.start_agent();
    let status = lab.status();
    let primary = failover_tests::status::backend(&status, "web", "primary");
    assert_eq!(
        primary.admin.as_deref(),
        Some("suppressed (flapping)"),
        "after a restart: {status:#?}"
    );
    let held = lab.sample(5, Duration::from_millis(20));
    assert_eq!(held.answered_by("standby"), 5, "{}", held.summary());
    // Reused once the penalty decays (about 7 s from the third failure).
    lab.wait_log("backend reused", Duration::from_secs(10));
    let back = lab.sample_until("primary", Duration::from_secs(3));
    let reused_after = suppressed_at.elapsed();
    eprintln!(
        "damping: suppressed after three failures; reused and back on the primary {} ms after the suppression; {}",
        reused_after.as_millis(),
        back.summary()
    );
    assert!(
        back.reached().is_some(),
        "{}\n{}",
        back.summary(),
        lab.diag()
    );
    assert_eq!(
        lab.log_lines("backend suppressed").len(),
        1,
        "resumed after the restart, not suppressed anew"
    );
}
