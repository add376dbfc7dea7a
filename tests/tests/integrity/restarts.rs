//! Operator and policy state across restarts.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{AgentLab, Failback, Layout, Options, PRIMARY, Probe},
    config::{DeadFlows, SetPolicies},
    status::backend,
};

use crate::{
    flows::{all_new_flows_on, expect_new_flows_on},
    tcp_probe,
};

/// SIGKILLs the agent and starts it again on the same pins (a crash and
/// a supervisor's restart).
fn crash_and_restart(lab: &mut AgentLab) {
    lab.kill_agent();
    lab.start_agent();
}

fn state_and_admin(lab: &AgentLab, name: &str) -> (String, Option<String>) {
    let status = lab.status();
    let b = backend(&status, "web", name);
    (b.state.clone(), b.admin.clone())
}

/// Long enough for the restarted agent's probes to pass `rise` and act on it.
const SETTLE: Duration = Duration::from_millis(800);

#[test]
fn maintenance_survives_a_crash_and_restart() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["maintenance", "web/primary", "on"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    crash_and_restart(&mut lab);
    // The primary answers its probes, but it is in maintenance.
    std::thread::sleep(SETTLE);
    assert_eq!(
        state_and_admin(&lab, "primary"),
        ("down".into(), Some("maintenance".into())),
        "{}",
        lab.diag()
    );
    all_new_flows_on(&lab, "standby", 20, "maintenance after a restart");
    lab.ctl(&["maintenance", "web/primary", "off"]);
    expect_new_flows_on(&lab, "primary", Instant::now(), Duration::from_secs(2));
}

#[test]
fn a_policy_drain_survives_a_restart_as_a_policy_drain() {
    // dead_flows = "keep": a failed backend is draining (its flows stay),
    // not drained by an operator; once healthy it fails back on its own.
    let layout = Layout::primary_standby().dead_flows(DeadFlows::Keep);
    let options = Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(Duration::from_millis(500)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |_, config| config);
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(3));
    assert_eq!(state_and_admin(&lab, "primary"), ("draining".into(), None));
    crash_and_restart(&mut lab);
    std::thread::sleep(SETTLE);
    assert_eq!(
        state_and_admin(&lab, "primary"),
        ("draining".into(), None),
        "a policy drain came back as something else\n{}",
        lab.diag()
    );
    let recovered = Instant::now();
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Up);
    expect_new_flows_on(&lab, "primary", recovered, Duration::from_secs(5));
}

#[test]
fn a_drain_deadline_survives_a_crash_and_restart() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["drain", "web/primary", "--deadline", "6s", "--no-wait"]);
    let deadline = Instant::now() + Duration::from_secs(6);
    crash_and_restart(&mut lab);
    // The agent's start (loading, adopting) can take seconds on a loaded
    // machine: only a restart well before the deadline must find the drain
    // still running; the deadline itself is checked below either way.
    let state = state_and_admin(&lab, "primary");
    if Instant::now() + Duration::from_millis(500) < deadline {
        assert_eq!(state, ("draining".into(), Some("drained".into())));
    }
    // At the deadline the drain ends in down (remaining flows re-picked).
    let started = Instant::now();
    while state_and_admin(&lab, "primary").0 != "down" {
        assert!(
            Instant::now() < deadline + Duration::from_secs(2),
            "the drain deadline was lost in the restart: {:?} {:.1} s after the deadline\n{}",
            state_and_admin(&lab, "primary"),
            (Instant::now() - deadline).as_secs_f64(),
            lab.diag()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        Instant::now() + Duration::from_millis(200) >= deadline,
        "the drain ended before its deadline"
    );
}

#[test]
fn a_switchover_survives_a_crash_and_restart() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["switchover", "web", "--to", "standby"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    crash_and_restart(&mut lab);
    std::thread::sleep(SETTLE);
    let status = lab.status();
    assert_eq!(
        failover_tests::status::service(&status, "web")
            .switchover
            .as_deref(),
        Some("standby"),
        "{status:#?}"
    );
    assert_eq!(
        state_and_admin(&lab, "primary"),
        (
            "draining".into(),
            Some("standing by: switchover to standby".into())
        )
    );
    all_new_flows_on(&lab, "standby", 20, "switched over, after a restart");
    // And it still ends the way a switchover ends.
    lab.ctl(&["switchover", "web", "--release"]);
    expect_new_flows_on(&lab, "primary", Instant::now(), Duration::from_secs(2));
}

#[test]
fn a_failback_hold_keeps_its_deadline_across_a_restart() {
    let delay = Duration::from_secs(4);
    let mut lab = AgentLab::start(Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(delay),
    });
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(3));
    let recovered = Instant::now();
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Up);
    lab.wait_log("failback held", Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    crash_and_restart(&mut lab);
    // The agent's start (loading, adopting) can take seconds on a loaded
    // machine: a hold that ended meanwhile ends at the start.
    let restarted = recovered.elapsed();
    // Rise (2 × 100 ms) was passed before the restart: the hold ends
    // `delay` after that, not `delay` after the restart.
    let back = expect_new_flows_on(&lab, "primary", recovered, Duration::from_secs(8));
    assert!(
        back >= delay && back < delay.max(restarted) + Duration::from_millis(1200),
        "failback {back:?} after the recovery, the agent back {restarted:?} after it; the hold \
         is {delay:?}\n{}",
        lab.diag()
    );
}
