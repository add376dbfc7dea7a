//! Flows outlive the edge host they came through: the other host's table
//! names the same backend and its replies need no state.

use std::{net::TcpStream, time::Duration};

use failover::lab::load::{self, Load, LongLived, Plan};
use failover_tests::fleet_lab::{EDGES, FleetLab};

use crate::{LONG, RETURN_BOUND, WITHDRAW_BOUND, changed_answers, long_connections, web};

#[test]
fn connections_through_a_host_that_is_gone_go_on_through_the_other_and_survive_its_return() {
    let mut lab = FleetLab::start();
    let (streams, first) = long_connections(&lab, Duration::from_secs(2));
    let through = |lab: &FleetLab, i: usize| {
        lab.edges[i]
            .status()
            .services
            .iter()
            .flat_map(|s| &s.backends)
            .filter_map(|b| b.packets_to)
            .sum::<u64>()
    };
    let on_edge0 = through(&lab, 0);
    eprintln!(
        "{LONG} connections: {on_edge0} packets to the backends through edge 0, {} through edge 1",
        through(&lab, 1)
    );
    assert!(
        on_edge0 > 0,
        "ECMP sent nothing through edge 0\n{}",
        lab.diag()
    );

    lab.host_down(0);
    let withdrawn = lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND);
    eprintln!("edge 0 gone: withdrawn after {withdrawn:?}");
    assert!(withdrawn.is_some(), "{}", lab.diag());
    let broken = changed_answers(&streams, &first);
    assert!(
        broken.is_empty(),
        "{} of {LONG} broke: {broken:?}\n{}",
        broken.len(),
        lab.diag()
    );

    lab.host_up(0);
    let back = lab.wait_nexthops(EDGES, RETURN_BOUND);
    eprintln!("edge 0 back: announced after {back:?}");
    assert!(back.is_some(), "{}", lab.diag());
    let broken = changed_answers(&streams, &first);
    assert!(
        broken.is_empty(),
        "on its return {} of {LONG} broke: {broken:?}\n{}",
        broken.len(),
        lab.diag()
    );
}

#[test]
fn a_routing_daemon_restarted_under_load_fails_no_connection() {
    let mut lab = FleetLab::start();
    let streams: Vec<Option<TcpStream>> = lab.client.run(|| {
        (0..LONG)
            .map(|_| Some(load::connect(web(), Duration::from_secs(2)).expect("connect")))
            .collect()
    });
    let plan = Plan {
        long: Some(LongLived {
            streams,
            every: Duration::from_millis(200),
            reconnect: None,
        }),
        ..Plan::new_flows(web(), Duration::from_millis(10), Duration::from_secs(1))
    };
    let traffic = Load::start(&lab.client, plan).expect("start the client load");
    std::thread::sleep(Duration::from_secs(1));
    let restarted = std::time::Instant::now();
    lab.edges[0].restart_bird();
    // Withdrawn while it restarted (its sessions closed on the stop).
    let withdrawn = lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND);
    let back = lab.wait_nexthops(EDGES, RETURN_BOUND);
    eprintln!(
        "edge 0's BIRD restarted: withdrawn, announced again {back:?} after the new BIRD answered ({:?} from the stop)",
        restarted.elapsed()
    );
    assert!(withdrawn.is_some(), "never withdrawn\n{}", lab.diag());
    assert!(back.is_some(), "{}", lab.diag());
    std::thread::sleep(Duration::from_secs(1));
    let recorded = traffic.finish();
    let failed = recorded.failed(restarted);
    let asks: usize = recorded.long.iter().map(Vec::len).sum();
    eprintln!(
        "{} new connections, {asks} asks on {LONG} long connections; failed: {failed:?}",
        recorded.new_flows.len()
    );
    assert!(failed.is_empty(), "{failed:?}\n{}", lab.diag());
}

#[test]
fn a_host_that_dies_silently_is_found_by_bfd_and_its_connections_go_on() {
    let lab = FleetLab::start();
    let (streams, first) = long_connections(&lab, Duration::from_secs(3));
    let silenced = std::time::Instant::now();
    lab.host_silent(0);
    let withdrawn = lab.wait_nexthops(EDGES - 1, WITHDRAW_BOUND);
    let replies_moved: Vec<_> = (0..lab.backends.len())
        .map(|k| lab.wait_return_paths(k, EDGES - 1, WITHDRAW_BOUND))
        .collect();
    eprintln!(
        "edge 0 silent: the router withdrew it after {withdrawn:?}, the backends' replies moved after {replies_moved:?} ({:?} in all)",
        silenced.elapsed()
    );
    assert!(withdrawn.is_some(), "{}", lab.diag());
    assert!(replies_moved.iter().all(Option::is_some), "{}", lab.diag());
    let broken = changed_answers(&streams, &first);
    assert!(
        broken.is_empty(),
        "{} of {LONG} broke: {broken:?}\n{}",
        broken.len(),
        lab.diag()
    );

    lab.host_heard(0);
    let back = lab.wait_nexthops(EDGES, RETURN_BOUND);
    eprintln!("edge 0 heard again: announced after {back:?}");
    assert!(back.is_some(), "{}", lab.diag());
    let broken = changed_answers(&streams, &first);
    assert!(
        broken.is_empty(),
        "on its return {} of {LONG} broke: {broken:?}\n{}",
        broken.len(),
        lab.diag()
    );
}
