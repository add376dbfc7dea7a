//! The failover drill.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::AgentLab;
use failover_tests::load::summary;

use crate::{
    clients::{assert_answered_by, load_on_web, open_long, web},
    decisions::assert_plain_primary_standby,
    tcp_probe,
};

/// `failover drill web` under client load: reports its three steps, passes,
/// leaves new flows on the primary and both backends undrained; no request
/// fails and no flow is re-picked.
#[test]
fn drill_switches_verifies_and_returns_with_no_failed_request() {
    let lab = AgentLab::start(tcp_probe());
    let repicks = lab.counter("event_repick");
    let long = open_long(&lab, web(), 2, "primary");
    let (load, t0) = load_on_web(
        &lab,
        Duration::from_millis(10),
        long,
        Duration::from_millis(500),
    );
    let drill_started = Instant::now();
    let out = lab.ctl(&["drill", "web", "--verify-for", "10s"]);
    let drill_done = Instant::now();
    eprintln!(
        "drill ({} ms):\n{out}",
        (drill_done - drill_started).as_millis()
    );
    for step in [
        "drill web: primary -> standby -> primary",
        "1. switchover to standby",
        "2. verified: standby is healthy and answered",
        "3. switched back to primary",
        "drill passed",
    ] {
        assert!(
            out.contains(step),
            "no {step:?} in the drill's report:\n{out}"
        );
    }
    std::thread::sleep(Duration::from_millis(1000));
    let recorded = load.finish();

    assert_plain_primary_standby(&lab.status());
    let failed = recorded.failures();
    let on_standby = recorded
        .new_flows
        .iter()
        .filter(|s| s.result.as_deref() == Ok("standby"))
        .count();
    eprintln!(
        "drill under load: {} new flows ({on_standby} on the standby during the drill), {} long-lived requests, {failed} failed",
        recorded.new_flows.len(),
        recorded.long.iter().map(Vec::len).sum::<usize>()
    );
    assert_eq!(failed, 0, "{:?}\n{}", recorded.failed(t0), lab.diag());
    assert!(on_standby >= 1, "{}", summary(&recorded.new_flows, t0));
    // Only flows that started during the drill went to the standby.
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.result.as_deref() == Ok("standby"))
            .all(|s| s.started >= drill_started && s.started <= drill_done),
        "{}",
        summary(&recorded.new_flows, t0)
    );
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.started > drill_done)
            .all(|s| s.result.as_deref() == Ok("primary")),
        "new flows after the drill: {}",
        summary(&recorded.new_flows, t0)
    );
    for (i, samples) in recorded.long.iter().enumerate() {
        assert!(
            samples.iter().all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i}: {}",
            summary(samples, t0)
        );
    }
    assert_answered_by(&lab, web(), 20, "primary");
    assert_eq!(lab.counter("event_repick"), repicks, "{}", lab.diag());
}
