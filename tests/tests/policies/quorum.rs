//! Quorum: `next_tier`, `fail_open`, `fail_closed`.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{AgentLab, Health, Layout, request},
    config::{Quorum, QuorumPolicy, SetPolicies},
    load::Failed,
};

use crate::{
    NEW_FLOWS,
    lab::{health_probe, kill, tcp_probe, three_and_a_standby},
    long::{Long, count_by_backend, disturbed, open_long},
    spread::Spread,
    view::{decisions, healthy, new_flows_to, state, wait_status},
};

/// `min_healthy = 2`, default `quorum_policy` (`next_tier`): tier 0 (a, b,
/// c) loses two members, so its last healthy member is drained and tier 1
/// (d) takes every new flow; a's established connections stay.
#[test]
fn quorum_next_tier_drains_the_tier_below_quorum() {
    let mut lab = AgentLab::start_layout(tcp_probe(), three_and_a_standby(), |_, config| config);
    let before = Spread::of(&lab, 90);
    assert_eq!(before.count("d"), 0, "{}", before.describe());
    let mut longs = open_long(&lab, 30);
    let long_before = count_by_backend(&longs);

    let t0 = Instant::now();
    kill(&mut lab, "b");
    kill(&mut lab, "c");
    let (status, gap) = wait_status(&lab, "tier 0 below quorum", t0, |st| {
        new_flows_to(st) == ["d"]
    });
    let after = Spread::of(&lab, 100);
    let mut on_a: Vec<&mut Long> = longs.iter_mut().filter(|l| l.backend == "a").collect();
    let on_a_n = on_a.len();
    let disturbed_a = disturbed(&mut on_a);
    eprintln!(
        "quorum next_tier: before {}; b and c killed, new flows to d after {} ms; after {}; \
         long connections {long_before:?}, on a disturbed {}/{on_a_n}; status {}",
        before.describe(),
        gap.as_millis(),
        after.describe(),
        disturbed_a.len(),
        decisions(&status)
    );

    assert!(healthy(&status, "a"), "{:#}", decisions(&status));
    assert_eq!(state(&status, "a"), "draining", "{:#}", decisions(&status));
    for name in ["b", "c"] {
        assert!(!healthy(&status, name));
        assert_eq!(state(&status, name), "down", "{:#}", decisions(&status));
    }
    assert_eq!(state(&status, "d"), "up");
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.last().is_some_and(|l| l.contains("to=d")),
        "{switched:#?}"
    );
    assert!(after.failures.is_empty(), "{}", after.describe());
    assert_eq!(after.count("d"), after.total, "{}", after.describe());
    assert!(on_a_n > 0, "no long connection on a: {long_before:?}");
    assert!(
        disturbed_a.is_empty(),
        "a's connections were disturbed: {disturbed_a:#?}\n{}",
        lab.diag()
    );
}

/// `min_healthy = "50%"` (2 of 3) and `quorum_policy = "fail_open"`:
/// two of tier 0 fail their health checks
/// but still serve; below quorum the tier keeps every member, healthy or
/// not, and the standby takes nothing.
#[test]
fn quorum_fail_open_keeps_every_member_of_the_tier() {
    let lab = AgentLab::start_layout(
        health_probe(),
        Layout::tiers(&[("a", 0), ("b", 0), ("c", 0), ("d", 1)])
            .min_healthy(Quorum::Percent(50))
            .quorum_policy(QuorumPolicy::FailOpen),
        |_, config| config,
    );
    let t0 = Instant::now();
    for name in ["b", "c"] {
        lab.health[lab.layout().index(name)].set(Health::Down);
    }
    let (status, gap) = wait_status(&lab, "b and c unhealthy", t0, |st| {
        !healthy(st, "b") && !healthy(st, "c")
    });
    let after = Spread::of(&lab, NEW_FLOWS);
    let status_after = lab.status();
    eprintln!(
        "quorum fail_open: b and c unhealthy after {} ms; {}; status {}",
        gap.as_millis(),
        after.describe(),
        decisions(&status_after)
    );

    for st in [&status, &status_after] {
        assert_eq!(new_flows_to(st), ["a", "b", "c"], "{:#}", decisions(st));
        for name in ["a", "b", "c"] {
            assert_eq!(state(st, name), "up", "{:#}", decisions(st));
        }
        assert!(healthy(st, "a") && !healthy(st, "b") && !healthy(st, "c"));
    }
    assert!(after.failures.is_empty(), "{}", after.describe());
    assert_eq!(after.count("d"), 0, "{}", after.describe());
    for name in ["a", "b", "c"] {
        assert!(
            (20.0..=47.0).contains(&after.share(name)),
            "uneven spread over the tier: {}",
            after.describe()
        );
    }
}

/// `quorum_policy = "fail_closed"`: below quorum the service takes no new
/// flows at all (dropped, `drop_no_backend`), but established connections
/// on the healthy member are still answered.
#[test]
fn quorum_fail_closed_takes_no_new_flows_and_keeps_established_ones() {
    let mut lab = AgentLab::start_layout(
        tcp_probe(),
        three_and_a_standby().quorum_policy(QuorumPolicy::FailClosed),
        |_, config| config,
    );
    let mut longs = open_long(&lab, 30);
    let long_before = count_by_backend(&longs);

    let t0 = Instant::now();
    kill(&mut lab, "b");
    kill(&mut lab, "c");
    let (status, gap) = wait_status(&lab, "fail closed", t0, |st| {
        new_flows_to(st).is_empty() && !healthy(st, "b") && !healthy(st, "c")
    });
    let drops = lab.counter("drop_no_backend");
    let attempts: Vec<Result<String, Failed>> = lab.client.run(|| {
        (0..10)
            .map(|_| request(Duration::from_millis(300)))
            .collect()
    });
    let dropped = lab.counter("drop_no_backend") - drops;
    let mut on_a: Vec<&mut Long> = longs.iter_mut().filter(|l| l.backend == "a").collect();
    let on_a_n = on_a.len();
    let disturbed_a = disturbed(&mut on_a);
    eprintln!(
        "quorum fail_closed: b and c killed, no new flows after {} ms; 10 new connections: {attempts:?}; \
         drop_no_backend +{dropped}; long connections {long_before:?}, on a disturbed {}/{on_a_n}; status {}",
        gap.as_millis(),
        disturbed_a.len(),
        decisions(&status)
    );

    for (i, attempt) in attempts.iter().enumerate() {
        assert!(
            attempt.is_err(),
            "new connection {i} was answered below quorum: {attempt:?}\n{}",
            lab.diag()
        );
    }
    assert!(
        dropped >= attempts.len() as u64,
        "drop_no_backend rose by {dropped} for {} attempts",
        attempts.len()
    );
    assert!(healthy(&status, "a"));
    assert_eq!(state(&status, "a"), "draining", "{:#}", decisions(&status));
    assert_eq!(state(&status, "d"), "draining", "{:#}", decisions(&status));
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.last().is_some_and(|l| l.contains("to=nothing")),
        "{switched:#?}"
    );
    assert!(on_a_n > 0, "no long connection on a: {long_before:?}");
    assert!(
        disturbed_a.is_empty(),
        "a's connections were disturbed: {disturbed_a:#?}\n{}",
        lab.diag()
    );
}
