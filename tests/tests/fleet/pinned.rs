//! Flows pinned off the table (here: established while backend0 was in
//! maintenance, on backend1, which the table no longer names for about
//! half of them once backend0 is back) outlive the edge host they came
//! through: `[sync]` has the other host continue them on backend1.

use std::time::Duration;

use failover_tests::fleet_lab::{EDGES, FleetLab};

use crate::{LONG, RETURN_BOUND, WITHDRAW_BOUND, changed_answers, long_connections};

#[test]
fn flows_pinned_off_the_table_survive_their_edge_host_through_the_other() {
    let mut lab = FleetLab::start();
    lab.maintenance("backend0", true);
    std::thread::sleep(Duration::from_millis(300));
    let (streams, first) = long_connections(&lab, Duration::from_secs(2));
    assert!(
        first.iter().all(|answer| answer.contains("backend1")),
        "backend0 is in maintenance, yet: {first:?}"
    );
    lab.maintenance("backend0", false);

    // Both hosts' tables name backend0 again for about half of the flows:
    // each host sends those it carries, the other learns them.
    let views = lab.wait_pinned_shared(Duration::from_secs(10));
    let counts: Vec<(u64, u64)> = views
        .iter()
        .map(|v| {
            (
                v.pinned_flows,
                v.received.get("learned").copied().unwrap_or(0),
            )
        })
        .collect();
    eprintln!("pinned flows and flows learned, per edge host: {counts:?}");
    let pinned: u64 = counts.iter().map(|c| c.0).sum();
    assert!(
        (5..=LONG as u64).contains(&pinned),
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

#[test]
fn a_host_that_returns_with_an_empty_flow_table_continues_the_flows_the_other_pinned_meanwhile() {
    let mut lab = FleetLab::start();
    // Edge 0 goes (and reboots: its pins are gone); edge 1 carries
    // everything, and pins flows while edge 0 is away.
    lab.host_down(0);
    assert!(
        lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND).is_some(),
        "{}",
        lab.diag()
    );
    lab.edges[0].forget_pins();
    let edge1_maintenance = |on: bool| {
        let output =
            lab.edges[1].failover(&["maintenance", "web/backend0", if on { "on" } else { "off" }]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    edge1_maintenance(true);
    std::thread::sleep(Duration::from_millis(300));
    let (streams, first) = long_connections(&lab, Duration::from_secs(2));
    assert!(
        first.iter().all(|answer| answer.contains("backend1")),
        "backend0 is in maintenance, yet: {first:?}"
    );
    edge1_maintenance(false);

    lab.host_up(0);
    assert!(
        lab.wait_nexthops(EDGES, RETURN_BOUND).is_some(),
        "{}",
        lab.diag()
    );
    let views = lab.sync_views();
    eprintln!(
        "edge 1 pinned {} flows; edge 0, back with an empty table, learned {:?}",
        views[1].pinned_flows, views[0].received
    );
    assert!(
        views[1].pinned_flows > 0,
        "nothing was pinned\n{}",
        lab.diag()
    );
    let broken = changed_answers(&streams, &first);
    assert!(
        broken.is_empty(),
        "{} of {LONG} broke when edge 0 returned: {broken:?}\n{}",
        broken.len(),
        lab.diag()
    );
}

#[test]
fn sync_datagrams_from_strangers_or_malformed_are_counted_and_never_written() {
    let lab = FleetLab::start();
    let edge0 = failover::lab::fleet::sync_addr(0);
    // From the router: not a peer, whatever it sends (a well-formed round,
    // then garbage).
    let forged = failover::flow_sync::wire::round(1, 1, &[]);
    lab.router.run(|| {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        for datagram in forged.iter().map(Vec::as_slice).chain([&b"garbage"[..]]) {
            socket.send_to(datagram, edge0).expect("send");
        }
    });
    let started = std::time::Instant::now();
    let refused = loop {
        let refused = lab.sync_views()[0].refused.clone();
        if refused.get("stranger") == Some(&2) || started.elapsed() > Duration::from_secs(5) {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(refused.get("stranger"), Some(&2), "{refused:?}");
    // The agent goes on, and still hears its real peer.
    let views = lab.sync_views();
    assert!(
        views[0].caught_up && views[0].peers[0].rounds_complete > 0,
        "{views:?}"
    );
    assert!(
        lab.edges[0]
            .agent_log()
            .contains("which is not in sync.peers"),
        "the refusal is logged"
    );
}
