//! Failback to the recovered primary: automatic after the delay (an
//! established connection on the standby stays), or manual on the
//! operator's word.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, Failback, HEALTH_PORT, Health, Options, PRIMARY, Probe};

use crate::switch::{SAMPLE_BOUND, expect_failover};

#[test]
fn auto_failback_waits_for_the_delay_and_keeps_standby_connections() {
    let delay = Duration::from_secs(1);
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(delay),
    });
    let t0 = Instant::now();
    lab.health[PRIMARY].set(Health::Down);
    expect_failover(&lab, "primary health down", t0);

    // A connection opened on the standby before the failback. (Flows that
    // were closing on the primary during the failover may have been
    // re-picked; count from here.)
    let repicks = lab.counter("event_repick");
    let mut long = lab.connect();
    let first = failover_tests::agent_lab::ask(&mut long).expect("ask on the long connection");
    assert_eq!(first, "standby");

    let up = Instant::now();
    lab.health[PRIMARY].set(Health::Up);
    let samples = lab.sample_until_since("primary", SAMPLE_BOUND, up, Duration::from_millis(500));
    let back = samples
        .reached()
        .unwrap_or_else(|| panic!("no failback: {}\n{}", samples.summary(), lab.diag()));
    eprintln!(
        "auto failback: primary healthy again at 0 ms, first new flow on it at {} ms (delay {delay:?}); samples {}",
        back.as_millis(),
        samples.summary()
    );
    assert_eq!(samples.failures(), 0, "{}", samples.summary());
    // Before the delay had passed every new flow stayed on the standby
    // (the hold starts only once the primary rose, after `up`).
    assert!(
        back >= delay,
        "failed back after {back:?}, before the {delay:?} delay: {}\n{}",
        samples.summary(),
        lab.diag()
    );
    assert!(
        samples.answered_by("standby") >= 20,
        "too few samples while held: {}",
        samples.summary()
    );
    assert!(
        back < delay + Duration::from_secs(2),
        "failback took {back:?}: {}\n{}",
        samples.summary(),
        lab.diag()
    );
    // The agent logs the switch just after writing the maps the samples saw.
    lab.wait_log("failback delay elapsed", Duration::from_secs(2));
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 2 && switched[1].contains("failback delay elapsed"),
        "{switched:#?}"
    );

    // New flows: primary. The standby's established connection: still on it.
    let after = lab.sample(20, Duration::from_millis(10));
    assert_eq!(after.answered_by("primary"), 20, "{}", after.summary());
    for i in 0..5 {
        let answer = failover_tests::agent_lab::ask(&mut long).unwrap_or_else(|e| {
            panic!(
                "long connection after failback, ask {i}: {e}\n{}",
                lab.diag()
            )
        });
        assert_eq!(answer, "standby", "the long connection moved");
    }
    assert_eq!(
        lab.counter("event_repick"),
        repicks,
        "a flow was re-picked\n{}",
        lab.diag()
    );
}

#[test]
fn manual_failback_waits_for_the_operator() {
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Manual,
    });
    let t0 = Instant::now();
    lab.health[PRIMARY].set(Health::Down);
    expect_failover(&lab, "primary health down (manual)", t0);

    lab.health[PRIMARY].set(Health::Up);
    lab.wait_log("waiting for an operator failback", Duration::from_secs(3));
    // Healthy, but held: several seconds of new flows all stay on the standby.
    let held = lab.sample(100, Duration::from_millis(25));
    assert_eq!(
        held.answered_by("standby"),
        100,
        "new flows left the standby without an operator failback: {}\n{}",
        held.summary(),
        lab.diag()
    );
    assert!(held.0.last().unwrap().0 >= Duration::from_secs(2));

    let pid_file = lab.pid_file().to_str().unwrap().to_owned();
    let asked = Instant::now();
    let out = lab.failover(&["failback", "--pid-file", &pid_file]);
    assert!(
        out.contains(&lab.agent_pid().to_string()),
        "failback signalled another process: {out}"
    );
    let samples =
        lab.sample_until_since("primary", SAMPLE_BOUND, asked, Duration::from_millis(500));
    let back = samples.reached().unwrap_or_else(|| {
        panic!(
            "no failback after `failover failback`: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    });
    eprintln!(
        "manual failback: new flows on the primary {} ms after `failover failback`",
        back.as_millis()
    );
    assert!(back < Duration::from_secs(2), "{}", samples.summary());
    // The agent logs the switch just after writing the maps the samples saw.
    lab.wait_log("cause=\"operator failback\"", Duration::from_secs(2));
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 2 && switched[1].contains("operator failback"),
        "{switched:#?}"
    );
    let after = lab.sample(20, Duration::from_millis(10));
    assert_eq!(after.answered_by("primary"), 20, "{}", after.summary());
}
