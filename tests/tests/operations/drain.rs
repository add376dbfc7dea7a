//! Drain with a deadline.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::AgentLab;
use failover_tests::{
    load::{Sample, summary},
    status::{backend, names, service},
};

use crate::{
    clients::{assert_answered_by, load_on_web, open_long, web},
    decisions::decisions,
    tcp_probe,
};

/// `drain --dry-run` changes nothing; `drain --deadline 4s --no-wait`: new
/// flows leave the primary at once, its long-lived flows keep answering
/// (and are counted in status) until the deadline, when the backend goes
/// down and their next packet is re-picked onto the standby, which has no
/// socket for them and resets them; `undrain` returns it.
#[test]
fn drain_keeps_long_flows_until_the_deadline_then_repicks_them() {
    let lab = AgentLab::start(tcp_probe());
    let long = open_long(&lab, web(), 3, "primary");

    // A dry run changes nothing.
    let before = decisions(&lab.status());
    let dry = lab.ctl_json(&["drain", "web/primary", "--deadline", "4s", "--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    assert_eq!(names(&dry["new_flows_after"]), ["standby"], "{dry:#}");
    let dry_text = lab.ctl(&["drain", "web/primary", "--deadline", "4s", "--dry-run"]);
    assert!(dry_text.contains("dry run: would drain"), "{dry_text}");
    assert_eq!(
        decisions(&lab.status()),
        before,
        "a dry run changed the status"
    );
    assert_answered_by(&lab, web(), 10, "primary");

    let repicks = lab.counter("event_repick");
    let (load, t0) = load_on_web(
        &lab,
        Duration::from_millis(20),
        long,
        Duration::from_millis(500),
    );
    let asked = Instant::now();
    let report = lab.ctl_json(&["drain", "web/primary", "--deadline", "4s", "--no-wait"]);
    let drained = Instant::now();
    assert_eq!(
        report["changes"],
        serde_json::json!([{"backend": "primary", "state": "draining"}]),
        "{report:#}"
    );
    assert_eq!(names(&report["new_flows_after"]), ["standby"], "{report:#}");
    let deadline_earliest = asked + Duration::from_secs(4);
    let deadline_latest = drained + Duration::from_secs(4);

    // Follow it through status, as `failover drain` without --no-wait does.
    let mut polls: Vec<(Duration, String, u64)> = Vec::new();
    while drained.elapsed() < Duration::from_secs(6) {
        let st = lab.status();
        let primary = backend(&st, "web", "primary");
        let state = primary.state.clone();
        let flows = primary.active_flows;
        assert_eq!(primary.admin.as_deref(), Some("drained"), "{st:#?}");
        assert_eq!(service(&st, "web").new_flows_to, ["standby"]);
        polls.push((drained.elapsed(), state, flows));
        std::thread::sleep(Duration::from_millis(250));
    }
    let recorded = load.finish();
    let repicked = lab.counter("event_repick") - repicks;
    eprintln!(
        "drain: status polls (t, primary state, active flows) {:?}",
        polls
            .iter()
            .map(|(t, s, f)| format!("{:.2}s {s} {f}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    for (i, samples) in recorded.long.iter().enumerate() {
        eprintln!(
            "drain: long connection {i} (times from 0.5 s before the drain): {}",
            summary(samples, t0)
        );
    }
    eprintln!(
        "drain: new flows {}; {repicked} re-picked packets",
        summary(&recorded.new_flows, t0)
    );

    // Before the deadline: draining, the long-lived flows counted as active.
    let before_deadline: Vec<_> = polls
        .iter()
        .filter(|(t, _, _)| drained + *t + Duration::from_millis(200) < deadline_earliest)
        .collect();
    assert!(before_deadline.len() >= 4, "{polls:?}");
    for (t, state, flows) in &before_deadline {
        assert_eq!(state, "draining", "at {t:?}: {polls:?}");
        assert!(*flows >= 3, "active flows at {t:?}: {polls:?}");
    }
    // After it: down.
    let last = polls.last().unwrap();
    assert_eq!(last.1, "down", "{polls:?}\n{}", lab.diag());
    // New flows: never failed; on the standby from the drain on.
    assert!(
        recorded.new_flows.iter().all(|s| s.result.is_ok()),
        "{}",
        summary(&recorded.new_flows, t0)
    );
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.started >= drained)
            .all(|s| s.result.as_deref() == Ok("standby")),
        "new flows went to the drained primary: {}",
        summary(&recorded.new_flows, t0)
    );
    // Long-lived flows: answered by the primary until the deadline; their
    // first request after it is re-picked (never the primary again).
    let mut after_deadline = Vec::new();
    for (i, samples) in recorded.long.iter().enumerate() {
        let until_deadline: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.done + Duration::from_millis(100) < deadline_earliest)
            .collect();
        assert!(
            until_deadline.len() >= 40,
            "long connection {i}: {}",
            summary(samples, t0)
        );
        assert!(
            until_deadline
                .iter()
                .all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i} before the deadline: {}",
            summary(samples, t0)
        );
        // Each load thread stops at its connection's first failure: the
        // last request is the first one the data path re-picked.
        let (last, earlier) = samples.split_last().unwrap();
        assert!(
            earlier.iter().all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i}: {}",
            summary(samples, t0)
        );
        assert!(
            last.started + Duration::from_millis(50) >= deadline_earliest
                && last.started <= deadline_latest + Duration::from_millis(1500),
            "long connection {i}: its last request was not the first after the deadline: {}",
            summary(samples, t0)
        );
        // The standby has no socket for the re-picked flow and resets it.
        assert!(
            matches!(&last.result, Err(e) if e.io == std::io::ErrorKind::ConnectionReset),
            "long connection {i} after the deadline: {}",
            summary(samples, t0)
        );
        after_deadline.push(format!(
            "{} ms after the drain: {:?}",
            last.started.saturating_duration_since(drained).as_millis(),
            last.result
        ));
    }
    eprintln!(
        "drain: first request on each long connection after the deadline: {after_deadline:?}"
    );
    assert!(
        repicked >= 3,
        "the long-lived flows were not re-picked ({repicked})\n{}",
        lab.diag()
    );

    // Undrain: the primary takes new flows again.
    let report = lab.ctl_json(&["undrain", "web/primary"]);
    assert_eq!(names(&report["new_flows_after"]), ["primary"], "{report:#}");
    let st = lab.status();
    let primary = backend(&st, "web", "primary");
    assert_eq!(primary.state, "up", "{st:#?}");
    assert!(primary.admin.is_none(), "{st:#?}");
    assert_answered_by(&lab, web(), 20, "primary");
    assert_eq!(decisions(&st), before, "undrain did not restore the status");
}
