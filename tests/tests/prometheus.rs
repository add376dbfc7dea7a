//! `dist/`'s Grafana dashboard and Prometheus alert rules against a real
//! Prometheus (started by the test in the lab's lb namespace, stopped by
//! its pid): `promtool check rules` passes, Prometheus scrapes the agent,
//! every dashboard panel's query returns series, and every alert but the
//! fleet's (tested in the fleet lab) fires in the scenario it describes and
//! resolves after: an agent down or not scraped at all, a failover, a
//! backend down, a service down, an empty standby pool, the flood guard,
//! the data path unreadable, map writes failing, the flow table nearly
//! full.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use failover::lab::topology::PEER_IF;
use failover_tests::{
    agent_lab::{
        AgentLab, Failback, FullMaglevMap, HEALTH_PORT, Health, Layout, Options, PRIMARY,
        PinsMovedAside, Probe, SERVICE_PORT, STANDBY, VIP,
    },
    flood::Flood,
    prometheus::{Prometheus, dashboard_queries, dist},
};

const METRICS_PORT: u16 = 9394;
const PROMETHEUS_PORT: u16 = 9395;
/// A second Prometheus in the same namespace, scraping no agent.
const LONELY_PROMETHEUS_PORT: u16 = 9396;

fn metrics_target() -> Vec<String> {
    vec![format!("127.0.0.1:{METRICS_PORT}")]
}

/// Waits (bounded) until Prometheus has scraped the agent, then a few
/// more scrapes (for the rates); no alert fires on the healthy lab.
fn wait_scraped(prometheus: &Prometheus) {
    prometheus.wait_series("up{job=\"failover\"} == 1", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4));
    let quiet = prometheus.firing();
    assert!(
        quiet.is_empty(),
        "alerts firing on a healthy lab: {quiet:?}"
    );
}

#[test]
fn the_dashboard_and_alert_rules_work_against_a_real_prometheus() {
    let rules = dist("prometheus/failover-alerts.yml");
    let checked = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("run promtool (cargo xtask setup installs prometheus)");
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let mut lab = AgentLab::start_with(
        Options {
            probe: Probe::Tcp { port: HEALTH_PORT },
            failback: Failback::Auto(Duration::from_millis(500)),
        },
        |_, config| {
            config
                .metrics(format!("127.0.0.1:{METRICS_PORT}"))
                .max_new_flows_per_cpu(1_000)
        },
    );
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    let prometheus = Prometheus::start(&lab.lb, PROMETHEUS_PORT, &metrics_target());
    wait_scraped(&prometheus);

    // The primary fails: a failover, a backend down. And a burst of first
    // ACKs far above the flood guard's rate.
    lab.health[PRIMARY].set(Health::Down);
    let client_if = lab.client.ifindex(PEER_IF);
    Flood::first_acks((VIP, SERVICE_PORT)).burst(&lab.client, client_if, 5_000);
    prometheus.wait_alert(
        "FailoverFloodGuard",
        None,
        true,
        Duration::from_secs(30),
        || lab.diag(),
    );
    let after = prometheus.wait_alert(
        "FailoverHappened",
        None,
        true,
        Duration::from_secs(30),
        || lab.diag(),
    );
    eprintln!("FailoverHappened fired {after:?} after the primary failed");
    let primary = Some(("backend", "primary"));
    prometheus.wait_alert(
        "FailoverBackendDown",
        primary,
        true,
        Duration::from_secs(40),
        || lab.diag(),
    );

    // Every panel's query returns series (the fleet's need [routing] and
    // [sync], which this lab has not).
    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries() {
        if title.starts_with("Fleet:") {
            continue;
        }
        if prometheus.query(&expr).is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panels without series: {empty:#?}");

    // The standby fails too: the service is down, no standby left.
    lab.health[STANDBY].set(Health::Down);
    let service = Some(("service", "web"));
    prometheus.wait_alert(
        "FailoverServiceDown",
        service,
        true,
        Duration::from_secs(30),
        || lab.diag(),
    );
    prometheus.wait_alert(
        "FailoverStandbyPoolEmpty",
        service,
        true,
        Duration::from_secs(40),
        || lab.diag(),
    );

    // Both back: everything resolves (the failover notice after its minute).
    lab.health[PRIMARY].set(Health::Up);
    lab.health[STANDBY].set(Health::Up);
    for (name, label) in [
        ("FailoverServiceDown", service),
        ("FailoverStandbyPoolEmpty", service),
        ("FailoverBackendDown", primary),
    ] {
        prometheus.wait_alert(name, label, false, Duration::from_secs(30), || lab.diag());
    }
    prometheus.wait_alert(
        "FailoverHappened",
        None,
        false,
        Duration::from_secs(120),
        || lab.diag(),
    );
    prometheus.wait_alert(
        "FailoverFloodGuard",
        None,
        false,
        Duration::from_secs(60),
        || lab.diag(),
    );

    // The maps cannot be opened by their paths (the pin directory moved
    // aside, as if the agent looked in another): the data path is
    // unreadable; moved back: resolved.
    let aside = PinsMovedAside::new(&lab);
    prometheus.wait_alert(
        "FailoverDatapathUnreadable",
        None,
        true,
        Duration::from_secs(60),
        || lab.diag(),
    );
    drop(aside);
    prometheus.wait_alert(
        "FailoverDatapathUnreadable",
        None,
        false,
        Duration::from_secs(30),
        || lab.diag(),
    );

    // The agent dies: not scraped; back: resolved.
    lab.kill_agent();
    prometheus.wait_alert(
        "FailoverAgentDown",
        None,
        true,
        Duration::from_secs(60),
        || lab.diag(),
    );
    lab.start_agent();
    prometheus.wait_alert(
        "FailoverAgentDown",
        None,
        false,
        Duration::from_secs(60),
        || lab.diag(),
    );
    assert!(prometheus.firing().is_empty(), "{:?}", prometheus.firing());
    drop(prometheus);
}

/// Time left until `deadline`, at least a few polls' worth.
fn until(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(2))
}

#[test]
fn map_write_flow_table_and_scrape_alerts_fire_and_resolve() {
    // Three active backends: new flows follow a Maglev table, which the
    // agent rewrites when one fails. A small flow table whose TCP flows
    // live two minutes.
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("c", 0)]);
    let options = Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Manual,
    };
    let flow_life = Duration::from_secs(120);
    let lab = AgentLab::start_layout(options, layout, |_, config| {
        config
            .metrics(format!("127.0.0.1:{METRICS_PORT}"))
            .max_flows(4_096)
            .tcp_timeouts(flow_life, flow_life)
    });
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    let prometheus = Prometheus::start(&lab.lb, PROMETHEUS_PORT, &metrics_target());
    // Configured with no agent at all: it must say so within its minute
    // (and a little for the evaluation).
    let lonely = Prometheus::start(&lab.lb, LONELY_PROMETHEUS_PORT, &[]);
    let lonely_deadline = Instant::now() + Duration::from_secs(90);
    wait_scraped(&prometheus);

    // a fails while FO_MAGLEV is full: the new table cannot be written.
    let full = FullMaglevMap::fill(&lab);
    lab.health[0].set(Health::Down);
    lab.wait_log("map update failed", Duration::from_secs(10));
    prometheus.wait_alert(
        "FailoverMapWriteFailures",
        None,
        true,
        Duration::from_secs(30),
        || lab.diag(),
    );
    drop(full);
    lab.wait_log("maps written again", Duration::from_secs(15));
    let written = Instant::now();
    // The maps agree again, but the alert holds for a minute after the
    // last failure.
    prometheus.wait_series(
        "failover_services_out_of_sync == 0",
        Duration::from_secs(10),
    );
    assert!(
        prometheus.is_firing("FailoverMapWriteFailures", None),
        "the write alert ended with the failure: {:?}",
        prometheus.firing()
    );

    // The flow table fills: a burst of first ACKs, each a new flow.
    let client_if = lab.client.ifindex(PEER_IF);
    let filled = Instant::now();
    Flood::first_acks((VIP, SERVICE_PORT)).burst(&lab.client, client_if, 6_000);
    prometheus.wait_series(
        "failover_flow_entries / failover_flow_capacity > 0.9",
        Duration::from_secs(10),
    );

    let resolved = prometheus.wait_alert(
        "FailoverMapWriteFailures",
        None,
        false,
        until(written + Duration::from_secs(90)),
        || lab.diag(),
    );
    let held = written.elapsed();
    eprintln!("FailoverMapWriteFailures resolved {held:?} after the maps were written again");
    assert!(
        held >= Duration::from_secs(30),
        "the write alert resolved {held:?} after the last failure, not about a minute ({resolved:?} waited)"
    );

    prometheus.wait_alert(
        "FailoverFlowTableNearlyFull",
        None,
        true,
        until(filled + Duration::from_secs(100)),
        || lab.diag(),
    );
    eprintln!(
        "FailoverFlowTableNearlyFull fired {:?} after the table filled",
        filled.elapsed()
    );

    // The Prometheus that scrapes no agent says so after its minute; given
    // the agent, it resolves.
    lonely.wait_alert(
        "FailoverNotScraped",
        None,
        true,
        until(lonely_deadline),
        || lab.diag(),
    );
    assert!(
        lonely
            .firing()
            .iter()
            .all(|(name, _)| name == "FailoverNotScraped"),
        "{:?}",
        lonely.firing()
    );
    assert!(
        !prometheus.is_firing("FailoverNotScraped", None),
        "{:?}",
        prometheus.firing()
    );
    lonely.set_targets(&metrics_target());
    lonely.wait_series("up{job=\"failover\"} == 1", Duration::from_secs(30));
    lonely.wait_alert(
        "FailoverNotScraped",
        None,
        false,
        Duration::from_secs(30),
        || lab.diag(),
    );

    // The flows expire and are reclaimed: the table alert resolves.
    prometheus.wait_alert(
        "FailoverFlowTableNearlyFull",
        None,
        false,
        until(filled + flow_life + Duration::from_secs(40)),
        || lab.diag(),
    );
    eprintln!(
        "FailoverFlowTableNearlyFull resolved {:?} after the table filled (flows live {flow_life:?})",
        filled.elapsed()
    );
}
