//! Planned operations (switchover, drill) leave every backend able to take
//! over.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{AgentLab, FAILOVER_BOUND, Layout, PRIMARY, new_flows},
    status::{backend, new_flows_to},
};

use crate::{flows::expect_new_flows_on, tcp_probe};

#[test]
fn a_switchover_and_back_leaves_the_standby_able_to_take_over() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["switchover", "web", "--to", "standby"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    let back = lab.ctl(&["switchover", "web", "--to", "primary"]);
    expect_new_flows_on(&lab, "primary", Instant::now(), Duration::from_secs(2));
    let status = lab.status();
    let standby = backend(&status, "web", "standby");
    assert_eq!(
        (standby.state.as_str(), standby.admin.as_deref()),
        ("up", None),
        "after switching back, the standby must be a plain standby again; switchover said:\n{back}\n{status:#?}"
    );

    // The next crash of the primary is a failover, not an outage.
    let t0 = Instant::now();
    drop(lab.servers[PRIMARY].take());
    let gap = expect_new_flows_on(&lab, "standby", t0, Duration::from_secs(6));
    assert!(gap < FAILOVER_BOUND, "took {gap:?}\n{}", lab.diag());
}

#[test]
fn the_target_of_a_switchover_failing_hands_new_flows_back() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["switchover", "web", "--to", "standby"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    // The standby (the switchover's target) crashes: the primary, which
    // the switchover only took new flows from, serves again.
    let t0 = Instant::now();
    drop(lab.servers[1].take());
    let gap = expect_new_flows_on(&lab, "primary", t0, Duration::from_secs(6));
    assert!(gap < FAILOVER_BOUND, "took {gap:?}\n{}", lab.diag());
    assert_eq!(new_flows_to(&lab.status(), "web"), ["primary"]);
}

#[test]
fn a_drill_on_an_active_active_tier_restores_every_member() {
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("c", 0), ("spare", 1)]);
    let lab = AgentLab::start_layout(tcp_probe(), layout, |_, config| config);
    let before = new_flows_to(&lab.status(), "web");
    assert_eq!(before, ["a", "b", "c"]);
    // The drill verifies the standby with real replies: keep clients coming.
    let load = new_flows(
        &lab.client,
        Duration::from_millis(20),
        Duration::from_millis(500),
    );
    let report = lab.ctl(&["drill", "web", "--verify-for", "5s"]);
    let recorded = load.finish();
    assert!(report.contains("drill passed"), "{report}\n{}", lab.diag());
    let status = lab.status();
    assert_eq!(
        new_flows_to(&status, "web"),
        before,
        "the drill must restore every member:\n{report}\n{status:#?}"
    );
    for name in ["a", "b", "c", "spare"] {
        let b = backend(&status, "web", name);
        assert_eq!(
            (b.state.as_str(), b.admin.as_deref()),
            ("up", None),
            "{name} after the drill:\n{report}\n{status:#?}"
        );
    }
    assert_eq!(
        recorded.failures(),
        0,
        "no request fails during a drill\n{}",
        lab.diag()
    );
}
