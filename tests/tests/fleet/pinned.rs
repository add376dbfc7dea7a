//! Flows pinned off the table (here: established while backend0 was in
//! maintenance, on backend1, which the table no longer names for about
//! half of them once backend0 is back) outlive the edge host they came
//! through: `[sync]` has the other host continue them on backend1.

use std::time::{Duration, Instant};

use failover_tests::fleet_lab::{EDGES, FleetLab};

use crate::{LONG, WITHDRAW_BOUND, changed_answers, long_connections};

/// Sets backend0's maintenance on every edge host.
fn maintenance(lab: &FleetLab, on: bool) {
    for edge in &lab.edges {
        let output = edge.failover(&["maintenance", "web/backend0", if on { "on" } else { "off" }]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Each edge host's pinned flows at its last round, and the flows it
/// learned from its peer so far.
fn sync_counts(lab: &FleetLab) -> Vec<(u64, u64)> {
    lab.edges
        .iter()
        .map(|edge| {
            let sync = edge.status().sync.expect("[sync] is configured");
            (
                sync.pinned_flows,
                sync.received.get("learned").copied().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn flows_pinned_off_the_table_survive_their_edge_host_through_the_other() {
    let mut lab = FleetLab::start();
    maintenance(&lab, true);
    std::thread::sleep(Duration::from_millis(300));
    let (streams, first) = long_connections(&lab, Duration::from_secs(2));
    assert!(
        first.iter().all(|answer| answer.contains("backend1")),
        "backend0 is in maintenance, yet: {first:?}"
    );
    maintenance(&lab, false);

    // Both hosts' tables name backend0 again for about half of the flows:
    // each host sends those it carries, the other learns them.
    let started = Instant::now();
    let counts = loop {
        let counts = sync_counts(&lab);
        let pinned: u64 = counts.iter().map(|c| c.0).sum();
        let learned: u64 = counts.iter().map(|c| c.1).sum();
        if (pinned > 0 && learned >= pinned) || started.elapsed() > Duration::from_secs(10) {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("pinned flows and flows learned, per edge host: {counts:?}");
    let pinned: u64 = counts.iter().map(|c| c.0).sum();
    assert!(
        pinned >= 5 && pinned <= LONG as u64,
        "{pinned} of {LONG} flows pinned off the table (about half expected)\n{}",
        lab.diag()
    );
    assert!(
        counts[0].0 > 0 && counts[1].1 >= counts[0].0,
        "edge 1 learned {} of edge 0's {} pinned flows\n{}",
        counts[1].1,
        counts[0].0,
        lab.diag()
    );

    lab.host_down(0);
    assert!(
        lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND).is_some(),
        "{}",
        lab.diag()
    );
    let broken = changed_answers(&streams, &first);
    assert!(
        broken.is_empty(),
        "{} of {LONG} broke when edge 0 went ({} of its flows were pinned): {broken:?}\n{}",
        broken.len(),
        counts[0].0,
        lab.diag()
    );
}
