//! Cold standby: not probed while the primary serves; when nothing is left
//! for new flows the agent runs its `start_command`, probes it, and sends
//! traffic once it passes `rise` probes — or reports that it never came up.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{
        AgentLab, BACKEND_PORT, BACKEND_UDP_PORT, Failback, Options, PRIMARY, Probe, STANDBY,
    },
    servers::BackendServer,
    status::BackendStatus,
};

/// The standby is cold: its start command writes `{address}:{port}` (as
/// substituted) to the lab's `started` file; it gets `start_timeout` and a
/// `start_retry` of 1 s.
fn cold_lab(start_timeout: Duration) -> AgentLab {
    let mut lab = AgentLab::start_with(
        Options {
            probe: Probe::Tcp { port: BACKEND_PORT },
            failback: Failback::Auto(Duration::from_secs(1)),
        },
        |dir, config| {
            let started = format!(
                "echo {{address}}:{{port}} >> {}",
                dir.join("started").display()
            );
            config.with_service("web", |web| {
                web.with_backend("standby", |standby| {
                    standby.cold(
                        &["/bin/sh", "-c", &started],
                        start_timeout,
                        Duration::from_secs(1),
                    )
                })
            })
        },
    );
    // A cold standby's service is not running until it is started.
    drop(lab.servers[STANDBY].take());
    lab
}

fn standby_status(lab: &AgentLab) -> BackendStatus {
    lab.status().services[0].backends[STANDBY].clone()
}

fn wait_for(what: &str, bound: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < bound,
            "{what} did not happen within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cold_standby_is_started_and_takes_over_when_the_primary_fails() {
    let mut lab = cold_lab(Duration::from_secs(10));
    let flag = lab.dir().join("started");
    std::thread::sleep(Duration::from_millis(600));
    let standby = standby_status(&lab);
    assert_eq!(
        standby.admin.as_deref(),
        Some("cold standby"),
        "{standby:#?}"
    );
    assert_eq!(standby.state, "down");
    assert_eq!(
        standby.probe.ok_total + standby.probe.failed_total,
        0,
        "not probed while cold: {standby:#?}"
    );
    assert!(!flag.exists());

    let t0 = Instant::now();
    drop(lab.servers[PRIMARY].take());
    wait_for("the start command", Duration::from_secs(5), || {
        flag.exists()
    });
    let started_after = t0.elapsed();
    lab.servers[STANDBY] = Some(BackendServer::start(
        &lab.backends[STANDBY],
        "standby",
        BACKEND_PORT,
        BACKEND_UDP_PORT,
    ));
    let samples = lab.sample_until("standby", Duration::from_secs(10));
    let reached = samples.reached().unwrap_or_else(|| {
        panic!(
            "the cold standby never took traffic: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    });
    eprintln!(
        "cold standby: start command after {started_after:?}, first answer {reached:?} after its start"
    );
    lab.wait_log("cold standby is up", Duration::from_secs(2));
    assert_eq!(lab.log_lines("starting cold standby").len(), 1);
    let standby = standby_status(&lab);
    assert_eq!(standby.state, "up", "{standby:#?}");
    // `{address}` and `{port}` were substituted.
    let written = std::fs::read_to_string(&flag).unwrap();
    assert_eq!(written.trim(), "198.51.100.18:8080");
    // It passed `rise` (2) probes before new flows were sent to it: the
    // health flip that put it in service carried two passing results.
    let log = lab.full_log();
    let healthy = log
        .lines()
        .position(|l| l.contains("backend healthy") && l.contains("backend=standby"))
        .expect("the standby's health flip is logged");
    let flip = log.lines().nth(healthy).unwrap();
    let evidence = flip
        .split("evidence=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("");
    let passing = evidence
        .split(", ")
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take_while(|result| result.starts_with("ok"))
        .count();
    assert!(
        passing >= 2,
        "put in service after {passing} passing probes: {flip}"
    );
    let switched = log
        .lines()
        .position(|l| l.contains("new flows switched") && l.contains("to=standby"))
        .expect("new flows switched to the standby");
    assert!(
        switched > healthy,
        "new flows went to the standby before it passed its probes"
    );
}

#[test]
fn a_cold_standby_that_never_comes_up_is_reported_and_retried_later() {
    let mut lab = cold_lab(Duration::from_secs(1));
    let flag = lab.dir().join("started");
    drop(lab.servers[PRIMARY].take());
    wait_for("the start command", Duration::from_secs(5), || {
        flag.exists()
    });
    // The standby's server is never started: no probe passes.
    lab.wait_log("did not come up in time", Duration::from_secs(5));
    let line = lab.log_lines("did not come up in time").remove(0);
    assert!(line.contains("reason="), "the reason is logged: {line}");
    wait_for("reported as failed", Duration::from_secs(3), || {
        standby_status(&lab).admin.as_deref() == Some("cold standby failed to start")
    });
    // Retried after start_retry (1 s), and not in a tight loop: each
    // attempt takes its start_timeout (1 s) and the pause after it.
    let failed_at = Instant::now();
    wait_for("a second attempt", Duration::from_secs(4), || {
        lab.log_lines("starting cold standby").len() >= 2
    });
    let retried_after = failed_at.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let attempts = lab.log_lines("starting cold standby").len();
    eprintln!(
        "cold standby retried {retried_after:?} after failing; {attempts} attempts in about 5 s"
    );
    assert!(
        (2..=4).contains(&attempts),
        "{attempts} attempts in about 5 s with 1 s timeouts and 1 s pauses:\n{}",
        lab.agent_log()
    );
}
