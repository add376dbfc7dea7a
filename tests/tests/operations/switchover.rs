//! Switchover under load.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::AgentLab;
use failover_tests::{
    load::{Sample, summary},
    status::{backend, names, service},
};

use crate::{
    clients::{load_on_web, open_long, web},
    decisions::assert_plain_primary_standby,
    tcp_probe,
};

/// `switchover web --to standby` and back under a new connection every 10 ms
/// and three long-lived connections asking every 50 ms: no request fails,
/// new flows follow each switch at once, the long-lived flows stay on the
/// primary (drained, not cut) and none is re-picked.
#[test]
fn switchover_under_continuous_load_fails_no_request() {
    let lab = AgentLab::start(tcp_probe());
    let repicks = lab.counter("event_repick");
    let long = open_long(&lab, web(), 3, "primary");
    let (load, t0) = load_on_web(
        &lab,
        Duration::from_millis(10),
        long,
        Duration::from_secs(1),
    );

    let to_standby = Instant::now();
    let report = lab.ctl_json(&["switchover", "web", "--to", "standby"]);
    let on_standby = Instant::now();
    assert_eq!(names(&report["new_flows_after"]), ["standby"], "{report:#}");
    assert_eq!(
        report["changes"],
        serde_json::json!([{"backend": "primary", "state": "draining"}]),
        "{report:#}"
    );
    std::thread::sleep(Duration::from_millis(2000));
    let during = lab.status();
    assert_eq!(service(&during, "web").new_flows_to, ["standby"]);
    let primary = backend(&during, "web", "primary");
    assert_eq!(primary.state, "draining", "{during:#?}");
    assert_eq!(
        primary.admin.as_deref(),
        Some("standing by: switchover to standby"),
        "{during:#?}"
    );
    assert_eq!(
        service(&during, "web").switchover.as_deref(),
        Some("standby")
    );
    assert!(
        primary.active_flows >= 3,
        "the long-lived flows are not counted on the drained primary: {during:#?}"
    );

    let to_primary = Instant::now();
    let report = lab.ctl_json(&["switchover", "web", "--to", "primary"]);
    let on_primary = Instant::now();
    assert_eq!(names(&report["new_flows_after"]), ["primary"], "{report:#}");
    std::thread::sleep(Duration::from_millis(2000));
    let recorded = load.finish();

    // Switching back leaves the standby a plain standby again.
    assert_plain_primary_standby(&lab.status());

    let failed = recorded.failures();
    let long_asks: usize = recorded.long.iter().map(Vec::len).sum();
    let standby_window: Vec<&Sample> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= on_standby && s.done < to_primary)
        .collect();
    let primary_window: Vec<&Sample> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= on_primary)
        .collect();
    eprintln!(
        "switchover under load: {} new flows, {long_asks} requests on {} long-lived connections; \
         switchover to the standby took {} ms, back {} ms; FAILED REQUESTS: {failed}\n  new flows {}",
        recorded.new_flows.len(),
        recorded.long.len(),
        (on_standby - to_standby).as_millis(),
        (on_primary - to_primary).as_millis(),
        summary(&recorded.new_flows, t0),
    );
    assert_eq!(
        failed,
        0,
        "requests failed: {:?}\n{}",
        recorded.failed(t0),
        lab.diag()
    );
    // New flows: the primary before, the standby right after the switchover
    // returned, the primary again right after the switch back.
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.done < to_standby)
            .all(|s| s.result.as_deref() == Ok("primary")),
        "{}",
        summary(&recorded.new_flows, t0)
    );
    assert!(
        standby_window.len() >= 50,
        "too few new flows while switched over: {}",
        standby_window.len()
    );
    assert!(
        standby_window
            .iter()
            .all(|s| s.result.as_deref() == Ok("standby")),
        "new flows after `switchover --to standby` not on the standby: {}",
        summary(&recorded.new_flows, t0)
    );
    assert!(primary_window.len() >= 50, "{}", primary_window.len());
    assert!(
        primary_window
            .iter()
            .all(|s| s.result.as_deref() == Ok("primary")),
        "new flows after `switchover --to primary` not on the primary: {}",
        summary(&recorded.new_flows, t0)
    );
    // The long-lived ones stayed on the primary all along (drained, not cut).
    for (i, samples) in recorded.long.iter().enumerate() {
        assert!(
            samples
                .iter()
                .filter(|s| s.started >= on_standby && s.done < to_primary)
                .count()
                >= 10,
            "long connection {i} barely asked while switched over: {}",
            summary(samples, t0)
        );
        assert!(
            samples.iter().any(|s| s.started >= on_primary),
            "long connection {i} not asked after the switch back"
        );
        assert!(
            samples.iter().all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i}: {}",
            summary(samples, t0)
        );
    }
    assert_eq!(
        lab.counter("event_repick"),
        repicks,
        "a flow was re-picked\n{}",
        lab.diag()
    );
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 2 && switched.iter().all(|l| l.contains("switchover")),
        "{switched:#?}"
    );
}
