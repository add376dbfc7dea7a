//! `failover host drain`: planned maintenance of an edge host.

use std::time::Duration;

use failover::lab::load::{Load, Plan};
use failover_tests::fleet_lab::{EDGES, FleetLab, router_link};

use crate::{RETURN_BOUND, web};

#[test]
fn a_drained_host_is_withdrawn_without_a_failed_connection_stays_drained_across_a_restart_and_says_when_it_is_safe_to_stop()
 {
    let mut lab = FleetLab::start();
    let load = Load::start(
        &lab.client,
        Plan::new_flows(web(), Duration::from_millis(10), Duration::from_secs(1)),
    )
    .expect("start the client load");
    std::thread::sleep(Duration::from_secs(1));
    let output = lab.edges[0].failover(&["host", "drain", "--timeout", "60s"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("withdrawn: the host is drained"),
        "{stdout}"
    );
    assert!(
        stdout.contains("drained: no active flow left on this host; it is safe to stop"),
        "{stdout}\n{}",
        lab.diag()
    );
    assert_eq!(lab.router_nexthops(), vec![router_link(1).1]);
    let recorded = load.finish();
    assert!(!recorded.new_flows.is_empty(), "no connection was made");
    let failed = recorded.failed(recorded.new_flows[0].started);
    eprintln!(
        "host drain under a connection every 10 ms: {} connections, {} failed",
        recorded.new_flows.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");

    lab.edges[0].stop_agent();
    lab.edges[0].start_agent();
    assert!(lab.edges[0].status().host_drained);
    // Nothing is announced before a backend answers a probe anyway: look
    // once one has.
    let started = std::time::Instant::now();
    while !lab.edges[0]
        .status()
        .services
        .iter()
        .flat_map(|s| &s.backends)
        .any(|b| b.probe.ok_total > 0)
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no probe answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        lab.edges[0].announced_routes(),
        "",
        "a restarted agent announced a drained host"
    );
    assert_eq!(lab.router_nexthops(), vec![router_link(1).1]);

    let output = lab.edges[0].failover(&["host", "undrain"]);
    assert!(output.status.success());
    let back = lab.wait_nexthops(EDGES, RETURN_BOUND);
    eprintln!("undrained: announced after {back:?}");
    assert!(back.is_some(), "{}", lab.diag());
    assert!(!lab.edges[0].status().host_drained);
}
