//! Each way the primary fails (process killed, link down, blackholed, slow
//! health answers) fails over to the standby.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{
    AgentLab, BACKEND_PORT, Failback, HEALTH_PORT, Health, Options, PRIMARY, Probe, SLOW_ANSWER,
};

use crate::switch::{expect_failover, tcp_probe};

#[test]
fn primary_process_killed_fails_over_to_the_standby() {
    let mut lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let t0 = Instant::now();
    // The primary's service (and probe target) goes away: connections are refused.
    drop(lab.servers[PRIMARY].take());
    expect_failover(&lab, "primary killed", t0);
}

#[test]
fn primary_link_down_fails_over_to_the_standby() {
    let lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let t0 = Instant::now();
    // The primary's end of its link goes down: the lb's side loses carrier.
    lab.backends[PRIMARY].ip(&["link", "set", "eth0", "down"]);
    expect_failover(&lab, "primary link down", t0);
}

#[test]
fn primary_blackholed_fails_over_to_the_standby() {
    let lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let t0 = Instant::now();
    // Everything the primary sends to the lb and the clients vanishes
    // silently: probes and client connections time out.
    let primary = &lab.backends[PRIMARY];
    primary.ip(&["route", "add", "blackhole", "198.51.100.1/32"]);
    primary.ip(&["route", "replace", "blackhole", "192.0.2.0/24"]);
    expect_failover(&lab, "primary blackholed", t0);
}

#[test]
fn primary_answering_slower_than_the_probe_timeout_fails_over() {
    let lab = AgentLab::start(Options {
        probe: Probe::Http { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    });
    // The health endpoint answers, but after 200 ms (timeout 50 ms); the
    // service itself still answers at once.
    assert!(SLOW_ANSWER > Duration::from_millis(50) * 2);
    let t0 = Instant::now();
    lab.health[PRIMARY].set(Health::Slow);
    expect_failover(&lab, "primary slow", t0);
    let unhealthy = lab.log_lines("backend unhealthy");
    assert!(
        unhealthy.iter().any(|l| l.contains("timed out")),
        "the probes should have timed out: {unhealthy:#?}"
    );
}
