//! Announce and withdraw, as the upstream router sees it.

use std::time::{Duration, Instant};

use failover::lab::load;
use failover_tests::{
    fleet_lab::{EDGES, FleetLab, VIP, router_link},
    prometheus::{Prometheus, dashboard_queries},
};

use crate::{RETURN_BOUND, WITHDRAW_BOUND, wait_journal, web};

/// The agent's metrics endpoint in an edge host's namespace (the default).
const METRICS: &str = "127.0.0.1:9370";
/// Where the test's Prometheus listens in that namespace.
const PROMETHEUS_PORT: u16 = 9395;

/// New connections through the router until `n` were answered or `bound`.
fn answered(lab: &FleetLab, n: usize, bound: Duration) -> (usize, Vec<String>) {
    lab.client.run(|| {
        let started = Instant::now();
        let (mut ok, mut failed) = (0, Vec::new());
        while ok < n && started.elapsed() < bound {
            match load::request(web(), Duration::from_millis(500)) {
                Ok(_) => ok += 1,
                Err(e) => failed.push(e.to_string()),
            }
        }
        (ok, failed)
    })
}

#[test]
fn a_host_whose_agent_is_killed_is_withdrawn_and_announced_again_when_it_returns() {
    let mut lab = FleetLab::start();
    let status = lab.edges[0].status();
    assert_eq!(status.announcements.len(), 1, "{status:#?}");
    let vip = &status.announcements[0];
    assert_eq!(vip.vip, VIP.to_string());
    assert!(vip.announced, "{vip:?}");
    assert_eq!(vip.why, "serving web");
    let (ok, failed) = answered(&lab, 20, Duration::from_secs(10));
    assert_eq!(ok, 20, "through both hosts: {failed:?}\n{}", lab.diag());

    lab.edges[0].kill_agent();
    let withdrawn = lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND);
    eprintln!("agent killed: the router withdrew the host in {withdrawn:?}");
    assert!(
        withdrawn.is_some(),
        "still {:?}\n{}",
        lab.router_nexthops(),
        lab.diag()
    );
    assert_eq!(lab.router_nexthops(), vec![router_link(1).1]);
    let (ok, failed) = answered(&lab, 20, Duration::from_secs(10));
    assert_eq!(ok, 20, "through the other host: {failed:?}\n{}", lab.diag());

    lab.edges[0].start_agent();
    let back = lab.wait_nexthops(EDGES, RETURN_BOUND);
    eprintln!("agent restarted: announced again after {back:?}");
    assert!(back.is_some(), "{}", lab.diag());
}

#[test]
fn a_host_that_reaches_no_backend_withdraws_the_vip_says_why_and_alerts() {
    let lab = FleetLab::start();
    let edge = &lab.edges[1];
    // A real Prometheus scrapes the edge host's agent (its default metrics
    // address) with `dist/`'s rules.
    let prometheus = Prometheus::start(&edge.ns, PROMETHEUS_PORT, &[METRICS.to_owned()]);
    prometheus.wait_series("up{job=\"failover\"} == 1", Duration::from_secs(60));
    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries() {
        if title.starts_with("Fleet:") && prometheus.query(&expr).is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "fleet panels without series: {empty:#?}");

    lab.backend_links(1, false);
    let withdrawn = lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND);
    eprintln!("no backend reachable: withdrawn after {withdrawn:?}");
    assert!(withdrawn.is_some(), "{}", lab.diag());
    assert_eq!(lab.router_nexthops(), vec![router_link(0).1]);
    let status = edge.status();
    let vip = &status.announcements[0];
    assert!(!vip.announced);
    assert_eq!(vip.why, "no backend takes new flows of web", "{vip:?}");
    let events = wait_journal(&edge.journal(), "vip_withdrawn", 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["details"]["vip"], VIP.to_string());
    let (ok, failed) = answered(&lab, 20, Duration::from_secs(10));
    assert_eq!(ok, 20, "through the other host: {failed:?}\n{}", lab.diag());
    let vip_label = VIP.to_string();
    let fired = prometheus.wait_alert(
        "FailoverVipWithdrawn",
        Some(("vip", &vip_label)),
        true,
        Duration::from_secs(40),
        || lab.diag(),
    );
    eprintln!("FailoverVipWithdrawn fired {fired:?} after the withdrawal");

    lab.backend_links(1, true);
    let back = lab.wait_nexthops(EDGES, RETURN_BOUND);
    eprintln!("backends reachable again: announced after {back:?}");
    assert!(back.is_some(), "{}", lab.diag());
    assert_eq!(wait_journal(&edge.journal(), "vip_announced", 2).len(), 2);
    prometheus.wait_alert(
        "FailoverVipWithdrawn",
        None,
        false,
        Duration::from_secs(30),
        || lab.diag(),
    );
}

#[test]
fn a_stopping_agent_withdraws_its_vips_and_says_so() {
    let mut lab = FleetLab::start();
    lab.edges[0].stop_agent();
    let withdrawn = lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND);
    assert!(withdrawn.is_some(), "{}", lab.diag());
    let events = wait_journal(&lab.edges[0].journal(), "vip_withdrawn", 1);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the agent is stopping")),
        "{events:#?}"
    );
}

#[test]
fn a_restarted_agent_announces_nothing_before_a_backend_answers_its_probes() {
    let mut lab = FleetLab::start();
    lab.edges[1].stop_agent();
    lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND)
        .expect("withdrawn on stop");
    // Its pins say the backends are healthy; from here it reaches none.
    lab.backend_links(1, false);
    lab.edges[1].start_agent();
    let status = lab.edges[1].status();
    assert!(
        status.announcements.iter().all(|a| !a.announced),
        "{status:#?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.edges[1].announced_routes(), "", "{}", lab.diag());
    assert_eq!(lab.router_nexthops(), vec![router_link(0).1]);
    lab.backend_links(1, true);
    let back = lab.wait_nexthops(EDGES, RETURN_BOUND);
    eprintln!("backends answer: announced after {back:?}");
    assert!(back.is_some(), "{}", lab.diag());
}

#[test]
fn a_reload_that_changes_a_service_keeps_its_vip_announced() {
    let lab = FleetLab::start();
    // A new probe interval rebuilds the service's runtime (and its probe
    // statistics), not its reachability.
    lab.edges[0].rewrite_config(|config| {
        config.with_service("web", |web| {
            web.probe(
                failover_tests::config::ProbeToml::tcp()
                    .port(failover_tests::fleet_lab::BACKEND_PORT)
                    .interval(Duration::from_millis(200))
                    .timeout(Duration::from_millis(100)),
            )
        })
    });
    let output = lab.edges[0].failover(&["reload"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            lab.router_nexthops().len(),
            EDGES,
            "withdrawn by a reload\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        wait_journal(&lab.edges[0].journal(), "vip_withdrawn", 1).is_empty(),
        "{}",
        lab.diag()
    );
}
