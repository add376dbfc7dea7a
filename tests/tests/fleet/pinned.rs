//! Flows pinned off the table (here: established while backend0 was in
//! maintenance, on backend1, which the table no longer names for about
//! half of them once backend0 is back) outlive the edge host they came
//! through: `[sync]` has the other host continue them on backend1.

use std::time::{Duration, Instant};

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
    // `inspect flows --pinned` lists exactly those, all long connections.
    let ports: Vec<u16> = streams
        .iter()
        .map(|s| s.local_addr().expect("local address").port())
        .collect();
    for (i, edge) in lab.edges.iter().enumerate() {
        let listed = edge.pinned_client_ports();
        assert_eq!(listed.len() as u64, counts[i].0, "edge {i}: {listed:?}");
        assert!(
            listed.iter().all(|p| ports.contains(p)),
            "edge {i}: {listed:?}"
        );
    }
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
    assert!(
        views[0].received.get("learned").copied().unwrap_or(0) >= views[1].pinned_flows,
        "{views:?}"
    );
    let broken = changed_answers(&streams, &first);
    assert!(
        broken.is_empty(),
        "{} of {LONG} broke when edge 0 returned: {broken:?}\n{}",
        broken.len(),
        lab.diag()
    );
}

/// Edge 0's sync counters, once `done` holds of them (bounded).
fn wait_sync(
    lab: &FleetLab,
    done: impl Fn(&failover::flow_sync::SyncView) -> bool,
) -> failover::flow_sync::SyncView {
    let started = std::time::Instant::now();
    loop {
        let view = lab.edges[0].status().sync.expect("[sync] is configured");
        if done(&view) || started.elapsed() > Duration::from_secs(5) {
            return view;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sync_datagrams_from_strangers_or_malformed_are_counted_and_never_written() {
    use failover::flow_sync::wire::{self, Endpoint, PinnedFlow};
    use failover_common::{FAMILY_IPV4, FlowKey, PROTO_TCP, flow_state, ipv4_addr};

    let mut lab = FleetLab::start();
    let edge0 = failover::lab::fleet::sync_addr(0);
    let send_from = |ns: &failover_tests::netns::NetNs, from: &str, datagrams: Vec<Vec<u8>>| {
        ns.run(|| {
            let socket = std::net::UdpSocket::bind(from).expect("bind");
            for datagram in &datagrams {
                socket.send_to(datagram, edge0).expect("send");
            }
        });
    };
    let flow = |vip_port: u16, backend: [u8; 4]| PinnedFlow {
        key: FlowKey::new(
            FAMILY_IPV4,
            ipv4_addr(failover_tests::fleet_lab::CLIENT_ADDR.octets()),
            ipv4_addr(failover_tests::fleet_lab::VIP.octets()),
            50_000u16.to_be(),
            vip_port.to_be(),
            PROTO_TCP,
        ),
        backend: Endpoint {
            family: FAMILY_IPV4,
            addr: ipv4_addr(backend),
            port_be: failover_tests::fleet_lab::BACKEND_PORT.to_be(),
        },
        state: flow_state::OPEN,
        remaining_ms: 60_000,
    };
    let period = Duration::from_millis(500);
    let real = failover_tests::fleet_lab::backend_addr(1).octets();

    // From the router, not a peer: even a well-formed round is refused.
    let forged = wire::round(
        1,
        1,
        period,
        &[flow(failover_tests::fleet_lab::SERVICE_PORT, real)],
    );
    send_from(
        &lab.router,
        "0.0.0.0:0",
        forged.into_iter().chain([b"garbage".to_vec()]).collect(),
    );
    let view = wait_sync(&lab, |v| v.refused.get("stranger") == Some(&2));
    assert_eq!(view.refused.get("stranger"), Some(&2), "{view:?}");
    assert_eq!(view.received.get("learned"), None, "{view:?}");
    assert!(
        lab.edges[0]
            .agent_log()
            .contains("which is not in sync.peers"),
        "the refusal is logged"
    );

    // From edge 1's own address and port (its agent stopped): garbage, a
    // bad record, a service and a backend edge 0 does not have, then one
    // good flow.
    lab.edges[1].kill_agent();
    let mut bad_record = wire::encode(
        wire::Header {
            boot: 9,
            round: 1,
            index: 0,
            last: true,
            period,
        },
        &[flow(failover_tests::fleet_lab::SERVICE_PORT, real)],
    );
    bad_record[20] = 5; // family
    let peer = failover::lab::fleet::sync_addr(1).to_string();
    let edge1_ns = &lab.edges[1].ns;
    send_from(
        edge1_ns,
        &peer,
        vec![
            b"FOSY garbage".to_vec(),
            bad_record,
            wire::round(9, 2, period, &[flow(81, real)]).remove(0),
            wire::round(
                9,
                3,
                period,
                &[flow(
                    failover_tests::fleet_lab::SERVICE_PORT,
                    [198, 51, 100, 99],
                )],
            )
            .remove(0),
            wire::round(
                9,
                4,
                period,
                &[flow(failover_tests::fleet_lab::SERVICE_PORT, real)],
            )
            .remove(0),
        ],
    );
    let view = wait_sync(&lab, |v| v.received.get("learned") == Some(&1));
    eprintln!("refused {:?}, received {:?}", view.refused, view.received);
    assert_eq!(view.refused.get("length"), Some(&1), "{view:?}");
    assert_eq!(view.refused.get("record"), Some(&1), "{view:?}");
    assert_eq!(view.received.get("unknown_service"), Some(&1), "{view:?}");
    assert_eq!(view.received.get("unknown_backend"), Some(&1), "{view:?}");
    assert_eq!(view.received.get("learned"), Some(&1), "{view:?}");
}

#[test]
fn a_starting_host_announces_only_once_its_peers_pinned_flows_are_in_or_the_peer_is_down() {
    let mut lab = FleetLab::start();
    // Edge 1 runs: edge 0, restarted, has its whole round at once.
    lab.edges[0].stop_agent();
    assert!(
        lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND).is_some(),
        "{}",
        lab.diag()
    );
    lab.edges[0].start_agent();
    assert!(
        lab.wait_nexthops(EDGES, RETURN_BOUND).is_some(),
        "{}",
        lab.diag()
    );
    let log = lab.edges[0].agent_log();
    let caught_up = log
        .lines()
        .rfind(|line| line.contains("caught up with the other edge hosts' pinned flows"))
        .unwrap_or_default();
    assert!(
        caught_up.contains(&failover::lab::fleet::sync_addr(1).to_string()),
        "edge 0 did not have edge 1's round: {caught_up}"
    );

    // Edge 1's agent gone: edge 0, restarted, never hears it, says so, and
    // announces only after the wait for a peer that is down.
    lab.edges[1].kill_agent();
    lab.edges[0].stop_agent();
    assert!(
        lab.wait_nexthops(0, WITHDRAW_BOUND).is_some(),
        "{}",
        lab.diag()
    );
    let started = Instant::now();
    lab.edges[0].start_agent();
    let mut said_waiting = false;
    let announced_after = loop {
        let status = lab.edges[0].status();
        said_waiting |= status
            .announcements
            .iter()
            .any(|a| a.why.contains("[sync]"));
        if status.announcements.iter().any(|a| a.announced) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < RETURN_BOUND,
            "never announced\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let wait = failover::flow_sync::catch_up_wait(Duration::from_millis(500));
    eprintln!("edge 0 announced {announced_after:?} after its start, alone (the wait: {wait:?})");
    assert!(said_waiting, "status never said it waited for the peers");
    assert!(
        announced_after >= wait,
        "announced {announced_after:?} after its start, before the {wait:?} wait for a peer that is down"
    );
}

/// A round far bigger than a peer's receive buffer at once (tens of
/// thousands of pinned flows, about two thousand datagrams) arrives whole.
#[test]
fn a_round_of_tens_of_thousands_of_pinned_flows_arrives_whole() {
    const FLOWS: u32 = 60_000;
    let lab = FleetLab::start();
    let (pinned, all_copied) = lab.big_round(FLOWS, Duration::from_secs(30));
    let views = lab.sync_views();
    eprintln!(
        "edge 0: {pinned} of {FLOWS} pinned, its walk {:.1} ms; edge 1 held every copy {all_copied:?} after the write ({:?})",
        views[0].last_walk_ms, views[1].received
    );
    assert!(
        all_copied.is_some(),
        "edge 1 never held copies of the {pinned} flows edge 0 pinned\n{views:?}"
    );
    assert_eq!(views[1].refused, Default::default());
}
