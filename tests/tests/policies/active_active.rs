//! Active-active: a failure in one tier with `dead_flows` `rehash` and
//! `keep`.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use failover_tests::{
    agent_lab::{AgentLab, Health},
    config::{DeadFlows, SetPolicies},
};

use crate::{
    LONG, NEW_FLOWS, QUICK,
    lab::{health_probe, kill, tcp_probe, three_active},
    long::{Asked, Long, ask_long, count_by_backend, disturbed, open_long},
    spread::Spread,
    view::{backend, decisions, healthy, ids, new_flows_to, state, tracked_backend, wait_status},
};

/// [`LONG`] long-lived connections, at least 5 on each of a, b and c
/// (logged as `test`'s).
fn open_long_on_each(lab: &AgentLab, test: &str) -> Vec<Long> {
    let longs = open_long(lab, LONG);
    let before = count_by_backend(&longs);
    eprintln!("{test}: {LONG} long connections: {before:?}");
    for name in ["a", "b", "c"] {
        assert!(
            before.get(name).copied().unwrap_or(0) >= 5,
            "too few long connections on {name}: {before:?}"
        );
    }
    longs
}

/// New flows after b's failure: none failed, none went to b, a and c
/// took about half each.
#[track_caller]
fn assert_split_over_a_and_c(spread: &Spread) {
    assert!(spread.failures.is_empty(), "{}", spread.describe());
    assert_eq!(spread.count("b"), 0, "{}", spread.describe());
    for name in ["a", "c"] {
        let share = spread.share(name);
        assert!(
            (35.0..=65.0).contains(&share),
            "uneven spread over the survivors: {}",
            spread.describe()
        );
    }
}

/// Three backends in tier 0 with the default `dead_flows = "rehash"`; one
/// dies. Connections on the survivors are untouched, the dead one's are
/// re-picked onto a survivor at once (and so fail fast instead of hanging),
/// new flows split evenly over the survivors.
#[test]
fn active_active_failure_leaves_survivors_flows_alone_and_repicks_the_dead_ones() {
    let mut lab = AgentLab::start_layout(tcp_probe(), three_active(), |_, config| config);
    let mut longs = open_long_on_each(&lab, "active-active");
    let ids = ids(&lab);
    let repicks = lab.counter("event_repick");

    let t0 = Instant::now();
    kill(&mut lab, "b");
    let (status, gap) = wait_status(&lab, "b marked down", t0, |st| {
        state(st, "b") == "down" && new_flows_to(st) == ["a", "c"]
    });
    assert!(!healthy(&status, "b"));
    eprintln!(
        "active-active: b killed; down in the data path after {} ms",
        gap.as_millis()
    );

    // The survivors' connections: every one still answered by its backend.
    let (mut survivors, mut dead): (Vec<&mut Long>, Vec<&mut Long>) =
        longs.iter_mut().partition(|l| l.backend != "b");
    let survivors_n = survivors.len();
    let disturbed_survivors = disturbed(&mut survivors);

    // The dead backend's connections: their kernel closed them when the
    // server stopped (FIN), so the first request reads end-of-stream; its
    // segment meets a backend that is down and is re-picked onto a
    // survivor, which has no such connection and answers with a reset, so
    // the second request finds the connection reset. Both fail at once;
    // none hangs or is answered by another backend.
    let first: Vec<Asked> = dead.iter_mut().map(|l| ask_long(l)).collect();
    std::thread::sleep(Duration::from_millis(50));
    let second: Vec<Asked> = dead.iter_mut().map(|l| ask_long(l)).collect();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (round, asked) in first
        .iter()
        .map(|a| ("1st", a))
        .chain(second.iter().map(|a| ("2nd", a)))
    {
        let label = match &asked.result {
            Ok(name) => format!("{round}: answered by {name}"),
            Err(err) => format!("{round}: {err}"),
        };
        *outcomes.entry(label).or_insert(0) += 1;
    }
    let slowest = first
        .iter()
        .chain(&second)
        .map(|a| a.took)
        .max()
        .unwrap_or_default();
    let repicked = lab.counter("event_repick") - repicks;
    let survivor_ids = [ids["a"], ids["c"]];
    let moved: Vec<(u16, Option<u64>)> = dead
        .iter()
        .map(|l| (l.port, tracked_backend(&lab, l.port)))
        .collect();

    let spread = Spread::of(&lab, NEW_FLOWS);
    eprintln!(
        "active-active (rehash): connections on survivors disturbed: {}/{survivors_n}; \
         the dead one's {} connections, two requests each: {outcomes:?}, slowest {:?}; \
         event_repick +{repicked}; after the failure {}",
        disturbed_survivors.len(),
        dead.len(),
        slowest,
        spread.describe()
    );

    assert!(
        disturbed_survivors.is_empty(),
        "connections on surviving backends were disturbed: {disturbed_survivors:#?}\n{}",
        lab.diag()
    );
    let kind = |asked: &Asked| -> String {
        match &asked.result {
            Ok(name) => format!("answered by {name}"),
            Err(err) => err.split(':').next().unwrap_or_default().to_owned(),
        }
    };
    for (port, (first, second)) in dead.iter().map(|l| l.port).zip(first.iter().zip(&second)) {
        assert!(
            ["UnexpectedEof", "ConnectionReset"].contains(&kind(first).as_str()),
            "first request on the dead backend's connection from :{port}: {:?}",
            first.result
        );
        assert!(
            ["BrokenPipe", "ConnectionReset"].contains(&kind(second).as_str()),
            "second request on the dead backend's connection from :{port} (no reset came \
             back?): {:?}",
            second.result
        );
        for asked in [first, second] {
            assert!(
                asked.took < QUICK,
                "a request on the dead backend's connection from :{port} took {:?}",
                asked.took
            );
        }
    }
    for (port, tracked) in &moved {
        assert!(
            tracked.is_some_and(|id| survivor_ids.contains(&id)),
            "the dead backend's flow from :{port} was not re-picked onto a survivor: {tracked:?} \
             (ids {ids:?})\n{}",
            lab.diag()
        );
    }
    assert!(
        repicked >= dead.len() as u64,
        "event_repick rose by {repicked} for {} dead connections",
        dead.len()
    );
    assert_split_over_a_and_c(&spread);
}

/// `dead_flows = "keep"`: a backend failing its health checks while still
/// serving keeps its established connections (marked draining); new flows
/// avoid it.
#[test]
fn keep_leaves_the_established_flows_of_an_unhealthy_backend_that_still_serves() {
    let lab = AgentLab::start_layout(
        health_probe(),
        three_active().dead_flows(DeadFlows::Keep),
        |_, config| config,
    );
    let mut longs = open_long_on_each(&lab, "keep");
    let ids = ids(&lab);
    let repicks = lab.counter("event_repick");

    let t0 = Instant::now();
    lab.health[lab.layout().index("b")].set(Health::Down);
    let (status, gap) = wait_status(&lab, "b unhealthy", t0, |st| {
        !healthy(st, "b") && new_flows_to(st) == ["a", "c"]
    });
    assert_eq!(
        state(&status, "b"),
        "draining",
        "an unhealthy backend with dead_flows = keep is drained: {:#}",
        decisions(&status)
    );
    eprintln!(
        "keep: b's health check down; new flows off b after {} ms",
        gap.as_millis()
    );

    // Every long connection, b's included, is answered by its own backend,
    // twice, half a second apart.
    let mut all: Vec<&mut Long> = longs.iter_mut().collect();
    let disturbed_first = disturbed(&mut all);
    std::thread::sleep(Duration::from_millis(500));
    let disturbed_second = disturbed(&mut all);
    let on_b: Vec<(u16, Option<u64>)> = longs
        .iter()
        .filter(|l| l.backend == "b")
        .map(|l| (l.port, tracked_backend(&lab, l.port)))
        .collect();
    let repicked = lab.counter("event_repick") - repicks;
    let spread = Spread::of(&lab, NEW_FLOWS);
    let status = lab.status();
    eprintln!(
        "keep: long connections disturbed: {} then {} of {LONG} (b's {} still answered by b); \
         event_repick +{repicked}; after the failure {}",
        disturbed_first.len(),
        disturbed_second.len(),
        on_b.len(),
        spread.describe()
    );

    assert!(
        disturbed_first.is_empty() && disturbed_second.is_empty(),
        "long connections disturbed: {disturbed_first:#?} {disturbed_second:#?}\n{}",
        lab.diag()
    );
    for (port, tracked) in &on_b {
        assert_eq!(*tracked, Some(ids["b"]), "b's flow from :{port} moved");
    }
    assert_eq!(repicked, 0, "flows were re-picked\n{}", lab.diag());
    assert_split_over_a_and_c(&spread);
    assert_eq!(state(&status, "b"), "draining", "{:#}", decisions(&status));
    let active_flows = backend(&status, "b").active_flows;
    assert!(
        active_flows >= on_b.len() as u64,
        "status counts {active_flows} active flows on b, {} are open",
        on_b.len()
    );
}
