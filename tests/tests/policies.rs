//! The redundancy policies of a service against the real agent (`failover
//! run`) in the namespace lab of `failover_tests::agent_lab`, laid out with
//! three or four backends ([`Layout`]): active-active in one tier (what a
//! failure does to the established flows of the survivors and of the dead
//! backend, with `dead_flows` `rehash` and `keep`, and how new flows spread
//! afterwards), N+1 (a spare takes exactly the failed member's share) and
//! the quorum policies (`next_tier`, `fail_open`, `fail_closed`).
//!
//! Every backend answers TCP on :8080 with its name and runs a health
//! endpoint on :8081 that the test can turn down while the service keeps
//! answering. Probes run every 100 ms (timeout 50 ms, fall 3, rise 2).
//! "Killing" a backend stops its server: its listener goes away (probes and
//! new connections are refused) and its established connections are closed
//! by its kernel (FIN), as when the process dies.
//!
//! Each test builds its own lab, so they run in parallel; every loop is
//! bounded; traffic stays inside the lab's namespaces. The disruption
//! figures are printed (`--nocapture` shows them).

use std::{
    collections::BTreeMap,
    net::TcpStream,
    time::{Duration, Instant},
};

use failover::lab::topology::CLIENT_ADDR;
use failover_tests::agent_lab::{
    AgentLab, BACKEND_PORT, FAILOVER_BOUND, Failback, HEALTH_PORT, HOSTS, Health, Layout, Options,
    PRIMARY, Probe, SERVICE_PORT, STANDBY, VIP, ask, request,
};
use failover_tests::{
    config::{BackendToml, DeadFlows, ProbeToml, Quorum, QuorumPolicy, Redundancy, ServiceToml},
    load::Failed,
    status::{self, BackendStatus, ServiceStatus, StatusAnswer},
};
use serde_json::Value;

/// New flows sampled to measure a spread (each backend's share is within
/// ±15 points of its expected 50 % with a margin of over 5 standard
/// deviations).
const NEW_FLOWS: usize = 300;
/// New flows sampled where a ±10 point tolerance must hold (N+1): 600
/// keeps that near 5 standard deviations too.
const NEW_FLOWS_N_PLUS_ONE: usize = 600;
/// Long-lived connections opened before a failure.
const LONG: usize = 60;
/// An answer on an established connection (or its error) must come this
/// fast; a connection left hanging would take the 2 s read timeout.
const QUICK: Duration = Duration::from_secs(1);

fn options(probe: Probe) -> Options {
    Options {
        probe,
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

/// Probes the traffic port: a stopped server fails them.
fn tcp_probe() -> Options {
    options(Probe::Tcp { port: BACKEND_PORT })
}

/// Probes the health endpoint: a backend can fail them and still serve.
fn health_probe() -> Options {
    options(Probe::Http { port: HEALTH_PORT })
}

// ---- Long-lived connections -----------------------------------------------------

/// A long-lived connection through the VIP and the backend that answered
/// its first request.
struct Long {
    stream: TcpStream,
    port: u16,
    backend: String,
}

/// `n` long-lived connections, each asked once.
fn open_long(lab: &AgentLab, n: usize) -> Vec<Long> {
    (0..n)
        .map(|i| {
            let mut stream = lab.connect();
            let backend = ask(&mut stream)
                .unwrap_or_else(|e| panic!("long connection {i}: {e}\n{}", lab.diag()));
            let port = stream.local_addr().expect("local address").port();
            Long {
                stream,
                port,
                backend,
            }
        })
        .collect()
}

fn count_by_backend(longs: &[Long]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for long in longs {
        *counts.entry(long.backend.clone()).or_insert(0) += 1;
    }
    counts
}

/// What one request on a long connection got, and how long it took.
struct Asked {
    result: Result<String, String>,
    took: Duration,
}

fn ask_long(long: &mut Long) -> Asked {
    let started = Instant::now();
    let result = ask(&mut long.stream).map_err(|e| format!("{:?}: {e}", e.kind()));
    Asked {
        result,
        took: started.elapsed(),
    }
}

/// Asks on each of `longs`; returns the ones not answered by their own
/// backend, as "port backend → result".
fn disturbed(longs: &mut [&mut Long]) -> Vec<String> {
    longs
        .iter_mut()
        .filter_map(|long| {
            let asked = ask_long(long);
            (asked.result.as_deref() != Ok(long.backend.as_str())).then(|| {
                format!(
                    ":{} {} → {:?} after {:?}",
                    long.port, long.backend, asked.result, asked.took
                )
            })
        })
        .collect()
}

// ---- New flows ----------------------------------------------------------------------

/// Where `n` new connections went.
struct Spread {
    counts: BTreeMap<String, usize>,
    failures: Vec<String>,
    total: usize,
}

impl Spread {
    fn of(lab: &AgentLab, n: usize) -> Self {
        let samples = lab.sample(n, Duration::from_millis(1));
        let mut counts = BTreeMap::new();
        let mut failures = Vec::new();
        for (_, result) in samples.0 {
            match result {
                Ok(name) => *counts.entry(name).or_insert(0) += 1,
                Err(err) => failures.push(err.detail),
            }
        }
        Self {
            counts,
            failures,
            total: n,
        }
    }

    fn count(&self, name: &str) -> usize {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Percentage of all new flows that `name` answered.
    fn share(&self, name: &str) -> f64 {
        100.0 * self.count(name) as f64 / self.total as f64
    }

    fn describe(&self) -> String {
        let shares: Vec<String> = self
            .counts
            .iter()
            .map(|(name, n)| format!("{name} {n} ({:.1} %)", self.share(name)))
            .collect();
        format!(
            "{} new flows: {}; {} failed",
            self.total,
            shares.join(", "),
            self.failures.len()
        )
    }
}

// ---- The agent's view ------------------------------------------------------------------

// The policy tests watch one service, "web".
fn web(status: &StatusAnswer) -> &ServiceStatus {
    status::service(status, "web")
}

fn backend<'a>(status: &'a StatusAnswer, name: &str) -> &'a BackendStatus {
    status::backend(status, "web", name)
}

fn state(status: &StatusAnswer, name: &str) -> String {
    backend(status, name).state.clone()
}

fn healthy(status: &StatusAnswer, name: &str) -> bool {
    backend(status, name).healthy
}

fn new_flows_to(status: &StatusAnswer) -> Vec<String> {
    status::new_flows_to(status, "web")
}

/// Backend name → data-path id (`inspect backends`, matched by address).
fn ids(lab: &AgentLab) -> BTreeMap<String, u64> {
    let rows = lab.inspect(&["backends"]);
    lab.layout()
        .backends
        .iter()
        .map(|b| {
            let addr = b.addr.to_string();
            let id = rows
                .as_array()
                .expect("backends array")
                .iter()
                .find(|row| row["address"] == addr.as_str())
                .and_then(|row| row["id"].as_u64())
                .unwrap_or_else(|| panic!("{} ({addr}) not in inspect backends: {rows}", b.name));
            (b.name.clone(), id)
        })
        .collect()
}

/// Polls the agent's status until `done` holds (bounded by
/// [`FAILOVER_BOUND`]); returns it and the time since `since`.
fn wait_status(
    lab: &AgentLab,
    what: &str,
    since: Instant,
    done: impl Fn(&StatusAnswer) -> bool,
) -> (StatusAnswer, Duration) {
    let started = Instant::now();
    loop {
        let status = lab.status();
        if done(&status) {
            return (status, since.elapsed());
        }
        assert!(
            started.elapsed() < FAILOVER_BOUND,
            "{what}: not within {FAILOVER_BOUND:?}; last status {:#}\n{}",
            decisions(&status),
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Who takes new flows and each backend's health and state, for messages.
fn decisions(status: &StatusAnswer) -> Value {
    let backends: Vec<Value> = web(status)
        .backends
        .iter()
        .map(|b| {
            serde_json::json!({"name": b.name, "tier": b.tier, "healthy": b.healthy,
                "state": b.state, "admin": b.admin})
        })
        .collect();
    serde_json::json!({"new_flows_to": web(status).new_flows_to, "backends": backends})
}

/// The backend id of the forward conntrack entry of the client's flow from
/// `port`, if there is one.
fn tracked_backend(lab: &AgentLab, port: u16) -> Option<u64> {
    let src = format!("{CLIENT_ADDR}:{port}");
    lab.inspect(&["flows", "--filter", &src])
        .as_array()
        .expect("flows array")
        .iter()
        .find(|f| f["direction"] == "forward" && f["src"] == src.as_str())
        .map(|f| f["backend"].as_u64().expect("backend id"))
}

/// `failover inspect explain` for a TCP flow from the client's `port`:
/// (path, backend id).
fn explain(lab: &AgentLab, port: u16) -> (String, Option<u64>) {
    let src = format!("{CLIENT_ADDR}:{port}");
    let dst = format!("{VIP}:{SERVICE_PORT}");
    let answer = lab.inspect(&["explain", "tcp", &src, &dst]);
    (
        answer["path"].as_str().expect("path").to_owned(),
        answer["backend"].as_u64(),
    )
}

/// The web service's row of `failover inspect services`.
fn service_row(lab: &AgentLab) -> Value {
    let rows = lab.inspect(&["services"]);
    let rows = rows.as_array().expect("services array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

fn selection(row: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = row["selection"]
        .as_array()
        .expect("selection")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids
}

fn three_active() -> Layout {
    Layout::tiers(&[("a", 0), ("b", 0), ("c", 0)])
}

fn three_and_a_standby() -> Layout {
    Layout::tiers(&[("a", 0), ("b", 0), ("c", 0), ("d", 1)]).min_healthy(Quorum::Count(2))
}

/// Stops backend `name`'s server (listener and established connections).
fn kill(lab: &mut AgentLab, name: &str) {
    let i = lab.layout().index(name);
    drop(lab.servers[i].take().expect("server running"));
}

// ---- Active-active -----------------------------------------------------------------------

/// Three backends in tier 0 with the default `dead_flows = "rehash"`; one
/// dies. Connections on the survivors are untouched, the dead one's are
/// re-picked onto a survivor at once (and so fail fast instead of hanging),
/// new flows split evenly over the survivors.
#[test]
fn active_active_failure_leaves_survivors_flows_alone_and_repicks_the_dead_ones() {
    let mut lab = AgentLab::start_layout(tcp_probe(), three_active(), |_, config| config);
    let mut longs = open_long(&lab, LONG);
    let before = count_by_backend(&longs);
    eprintln!("active-active: {LONG} long connections: {before:?}");
    for name in ["a", "b", "c"] {
        assert!(
            before.get(name).copied().unwrap_or(0) >= 5,
            "too few long connections on {name}: {before:?}"
        );
    }
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
    let mut longs = open_long(&lab, LONG);
    let before = count_by_backend(&longs);
    eprintln!("keep: {LONG} long connections: {before:?}");
    for name in ["a", "b", "c"] {
        assert!(
            before.get(name).copied().unwrap_or(0) >= 5,
            "too few long connections on {name}: {before:?}"
        );
    }
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
    assert!(spread.failures.is_empty(), "{}", spread.describe());
    assert_eq!(spread.count("b"), 0, "{}", spread.describe());
    for name in ["a", "c"] {
        let share = spread.share(name);
        assert!(
            (35.0..=65.0).contains(&share),
            "uneven spread: {}",
            spread.describe()
        );
    }
    assert_eq!(state(&status, "b"), "draining", "{:#}", decisions(&status));
    let active_flows = backend(&status, "b").active_flows;
    assert!(
        active_flows >= on_b.len() as u64,
        "status counts {active_flows} active flows on b, {} are open",
        on_b.len()
    );
}

// ---- N+1 ------------------------------------------------------------------------------------

/// `mode = "n_plus_one"`: members a and b (tier 0), spare s (tier 1). The
/// spare takes nothing while both members serve; when b dies it takes
/// exactly b's share: a's share and a's flows stay as they were.
#[test]
fn n_plus_one_spare_takes_exactly_the_dead_members_share() {
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("s", 1)]).redundancy(Redundancy::NPlusOne);
    let mut lab = AgentLab::start_layout(tcp_probe(), layout, |_, config| config);
    let ids = ids(&lab);
    let status = lab.status();
    assert_eq!(
        new_flows_to(&status),
        ["a", "b"],
        "{:#}",
        decisions(&status)
    );
    let before = Spread::of(&lab, NEW_FLOWS_N_PLUS_ONE);
    let table_before = service_row(&lab);
    // Ports the client never uses for connections (below the ephemeral
    // range): explain says where a new flow from each would go.
    let probe_ports: Vec<u16> = (1000..1100).collect();
    let mapped_before: Vec<Option<u64>> = probe_ports
        .iter()
        .map(|&port| {
            let (path, backend) = explain(&lab, port);
            assert_eq!(path, "new_flow", "explain :{port}");
            backend
        })
        .collect();
    let mut longs = open_long(&lab, 20);
    let long_before = count_by_backend(&longs);

    let t0 = Instant::now();
    kill(&mut lab, "b");
    // The agent's view follows the data path: the spare stands in for b.
    let (status, gap) = wait_status(&lab, "b down, the spare standing in", t0, |st| {
        state(st, "b") == "down" && new_flows_to(st) == ["a", "s"]
    });
    assert_eq!(state(&status, "a"), "up");
    assert_eq!(state(&status, "s"), "up");
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 1 && switched[0].contains("from=a,b") && switched[0].contains("to=a,s"),
        "{switched:#?}"
    );

    let mut on_a: Vec<&mut Long> = longs.iter_mut().filter(|l| l.backend == "a").collect();
    let on_a_n = on_a.len();
    let disturbed_a = disturbed(&mut on_a);
    let after = Spread::of(&lab, NEW_FLOWS_N_PLUS_ONE);
    let table_after = service_row(&lab);
    let mapped_after: Vec<(u16, String, Option<u64>)> = probe_ports
        .iter()
        .map(|&port| {
            let (path, backend) = explain(&lab, port);
            (port, path, backend)
        })
        .collect();
    let kept_on_a = mapped_before
        .iter()
        .zip(&mapped_after)
        .filter(|(b, a)| **b == Some(ids["a"]) && a.2 == Some(ids["a"]))
        .count();
    let to_spare = mapped_before
        .iter()
        .zip(&mapped_after)
        .filter(|(b, a)| **b == Some(ids["b"]) && a.2 == Some(ids["s"]))
        .count();
    eprintln!(
        "n+1: before the failure {}; b down after {} ms; after {}; a's share {:.1} % → {:.1} %; \
         explain over {} ports: {kept_on_a} stay on a, {to_spare} move b → s; \
         long connections {long_before:?}, on a disturbed {}/{on_a_n}; \
         table generation {} → {}, selection {:?} → {:?} (ids {ids:?})",
        before.describe(),
        gap.as_millis(),
        after.describe(),
        before.share("a"),
        after.share("a"),
        probe_ports.len(),
        disturbed_a.len(),
        table_before["table_generation"],
        table_after["table_generation"],
        selection(&table_before),
        selection(&table_after),
    );

    // Before: the members split new flows, the spare takes none.
    assert!(before.failures.is_empty(), "{}", before.describe());
    assert_eq!(before.count("s"), 0, "{}", before.describe());
    assert!(
        (40.0..=60.0).contains(&before.share("a")),
        "{}",
        before.describe()
    );
    // After: b's share goes to the spare; a keeps about half.
    assert!(after.failures.is_empty(), "{}", after.describe());
    assert_eq!(after.count("b"), 0, "{}", after.describe());
    assert!(
        (40.0..=60.0).contains(&after.share("a")),
        "a's share changed: before {}, after {}",
        before.describe(),
        after.describe()
    );
    assert!(
        (40.0..=60.0).contains(&after.share("s")),
        "{}",
        after.describe()
    );
    // Exactly: every port that went to a still does, every one that went
    // to b now goes to the spare.
    for (before, (port, path, after)) in mapped_before.iter().zip(&mapped_after) {
        assert_eq!(path, "new_flow", "explain :{port} after the failure");
        let expected = if *before == Some(ids["b"]) {
            Some(ids["s"])
        } else {
            *before
        };
        assert_eq!(
            *after, expected,
            "explain :{port}: before {before:?}, after {after:?} (ids {ids:?})"
        );
    }
    assert!(kept_on_a > 20 && to_spare > 20, "{kept_on_a} {to_spare}");
    // a's established connections are untouched.
    assert!(on_a_n > 0, "no long connection on a: {long_before:?}");
    assert!(
        disturbed_a.is_empty(),
        "a's connections were disturbed: {disturbed_a:#?}\n{}",
        lab.diag()
    );
    // The data path still has its table: flipped to the other generation,
    // over a and the spare.
    assert!(
        table_after["table_size"].as_u64().unwrap_or(0) > 0,
        "{table_after}"
    );
    assert_ne!(
        table_after["table_generation"], table_before["table_generation"],
        "{table_before} {table_after}"
    );
    assert_eq!(selection(&table_before), {
        let mut v = vec![ids["a"], ids["b"]];
        v.sort_unstable();
        v
    });
    assert_eq!(selection(&table_after), {
        let mut v = vec![ids["a"], ids["s"]];
        v.sort_unstable();
        v
    });
}

// ---- Quorum ----------------------------------------------------------------------------------

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

/// `dead_flows = "reset"` from the configuration: when a backend fails its
/// checks (its server still running), the next packet of a client's
/// established TCP connection to it is answered by the data path with a
/// RST from the VIP — the client sees the reset at once, and the request
/// never reaches any backend — while a UDP client's next datagram is
/// re-picked onto the survivor.
#[test]
fn reset_answers_a_dead_backends_tcp_flows_and_repicks_udp() {
    use std::{
        io::{ErrorKind, Read, Write},
        net::UdpSocket,
    };
    let layout = Layout::primary_standby().dead_flows(DeadFlows::Reset);
    let lab = AgentLab::start_layout(health_probe(), layout, |_, config| {
        config.service(
            ServiceToml::udp("dns", VIP, 53)
                .dead_flows(DeadFlows::Reset)
                .probe(
                    ProbeToml::tcp()
                        .port(HEALTH_PORT)
                        .interval(Duration::from_millis(100))
                        .timeout(Duration::from_millis(50)),
                )
                .backend(BackendToml::new("primary", HOSTS[PRIMARY].addr).port(5353))
                .backend(
                    BackendToml::new("standby", HOSTS[STANDBY].addr)
                        .port(5353)
                        .tier(1),
                ),
        )
    });
    // The configuration reached the data path: both services carry the flag.
    let services = lab.inspect(&["services"]);
    assert_eq!(services.as_array().map(Vec::len), Some(2), "{services:#}");
    for service in services.as_array().unwrap() {
        assert_eq!(service["reset_dead_flows"], true, "{services:#}");
    }

    let mut tcp = lab.connect();
    assert_eq!(ask(&mut tcp).unwrap(), "primary");
    let udp = lab.client.run(|| {
        let socket = UdpSocket::bind((CLIENT_ADDR, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        socket.connect((VIP, 53)).unwrap();
        socket
    });
    let mut answer = [0u8; 64];
    udp.send(b"who\n").unwrap();
    let n = udp.recv(&mut answer).expect("a udp answer");
    assert_eq!(&answer[..n], b"primary");

    let lines_before = lab.servers[0]
        .as_ref()
        .unwrap()
        .stats()
        .tcp_lines
        .load(std::sync::atomic::Ordering::Relaxed);
    let resets = lab.counter("tx_reset");
    let t0 = Instant::now();
    lab.health[0].set(Health::Down);
    wait_status(&lab, "primary unhealthy", t0, |st| !healthy(st, "primary"));

    // TCP: the request is answered with a reset, by the data path.
    let _ = tcp.write_all(b"which\n");
    let mut buf = [0u8; 64];
    let read = tcp.read(&mut buf);
    assert!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the client should see a reset at once: {read:?}\n{}",
        lab.diag()
    );
    assert!(
        lab.counter("tx_reset") > resets,
        "the reset came from the data path"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        lab.servers[0]
            .as_ref()
            .unwrap()
            .stats()
            .tcp_lines
            .load(std::sync::atomic::Ordering::Relaxed),
        lines_before,
        "the request of the dead flow reached the backend"
    );
    // UDP: re-picked onto the standby.
    udp.send(b"who\n").unwrap();
    let n = udp
        .recv(&mut answer)
        .expect("a udp answer after the failure");
    assert_eq!(&answer[..n], b"standby");
}
