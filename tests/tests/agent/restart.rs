//! SIGKILL and restart of the agent: the pinned program keeps forwarding,
//! the restarted agent adopts the pins, flows and backend ids stay.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, BACKEND_PORT, HOSTS, PRIMARY, load_with_long};

use crate::switch::tcp_probe;

/// Backend ids and states from `failover inspect backends --json`.
fn backend_table(lab: &AgentLab) -> Vec<(u64, String, String)> {
    let backends = lab.inspect(&["backends"]);
    let mut rows: Vec<(u64, String, String)> = backends
        .as_array()
        .expect("backends array")
        .iter()
        .map(|b| {
            (
                b["id"].as_u64().expect("id"),
                b["address"].as_str().expect("address").to_owned(),
                b["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The flow-table entries (service id, backend id) of the flow from `src`,
/// from `failover inspect flows --json` (its state may move from open to
/// closing as the test ends it).
fn long_flow(lab: &AgentLab, src: &str) -> Vec<(u64, u64)> {
    let flows = lab.inspect(&["flows", "--filter", src]);
    let mut rows: Vec<(u64, u64)> = flows
        .as_array()
        .expect("flows array")
        .iter()
        .filter(|f| matches!(f["state"].as_str(), Some("open" | "closing")))
        .map(|f| {
            (
                f["service"].as_u64().expect("service"),
                f["backend"].as_u64().expect("backend"),
            )
        })
        .collect();
    rows.sort();
    let primary_addr = HOSTS[PRIMARY].addr.to_string();
    let primary_id = backend_table(lab)
        .iter()
        .find(|b| b.1 == primary_addr)
        .expect("the primary in inspect backends")
        .0;
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        [primary_id],
        "the flow entry of {src}: one, live, on the primary"
    );
    rows
}

#[test]
fn agent_sigkill_and_restart_keep_forwarding_and_flows() {
    let mut lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let pin_dir = lab.pin_dir().to_owned();
    let table = backend_table(&lab);
    let expected: Vec<String> = HOSTS.iter().map(|h| h.addr.to_string()).collect();
    assert_eq!(
        table.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        expected,
        "{table:?}"
    );
    assert!(table.iter().all(|r| r.2 == "up"), "{table:?}");

    let mut long = lab.connect();
    let first = failover_tests::agent_lab::ask(&mut long).expect("ask on the long connection");
    assert_eq!(first, "primary");
    let long_src = format!("192.0.2.2:{}", long.local_addr().unwrap().port());
    let long_entries = long_flow(&lab, &long_src);
    let repicks = lab.counter("event_repick");
    // A new flow every 10 ms; the long connection asked every 50 ms.
    let sampler = load_with_long(
        &lab.client,
        Duration::from_millis(10),
        Duration::from_secs(1),
        vec![long],
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(500));

    let killed_pid = lab.agent_pid();
    let killed = Instant::now();
    lab.kill_agent();
    // Dead agent: the pinned link keeps the program attached (it goes on
    // forwarding new flows itself), the pinned maps keep their state, and
    // inspect reads them.
    let new_flows_at_kill = lab.counter("fwd_new_flow");
    std::thread::sleep(Duration::from_millis(1000));
    let new_flows_dead = lab.counter("fwd_new_flow") - new_flows_at_kill;
    assert!(
        new_flows_dead >= 20,
        "the data path forwarded only {new_flows_dead} new flows while the agent was dead\n{}",
        lab.diag()
    );
    assert!(
        pin_dir.join("link_lbc").exists(),
        "link pin gone after SIGKILL"
    );
    let dead_table = backend_table(&lab);
    assert_eq!(
        dead_table, table,
        "backends changed while the agent was dead"
    );
    let dead_services = lab.inspect(&["services"]);
    assert_eq!(
        dead_services.as_array().map(Vec::len),
        Some(1),
        "{dead_services}"
    );

    let restarted = Instant::now();
    lab.start_agent();
    assert_ne!(lab.agent_pid(), killed_pid);
    let log = lab.agent_log();
    assert!(
        log.contains("adopted pinned maps") && log.contains("XDP link adopted"),
        "the restarted agent did not adopt the pins\n{}",
        lab.diag()
    );
    std::thread::sleep(Duration::from_millis(1000));
    let recorded = sampler.finish();

    let dead_window = |at: &Instant| *at >= killed && *at < restarted;
    let failures: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| s.result.is_err())
        .map(|s| (s.started.saturating_duration_since(killed), &s.result))
        .collect();
    let while_dead = recorded
        .new_flows
        .iter()
        .filter(|s| dead_window(&s.started))
        .count();
    let elsewhere: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| matches!(&s.result, Ok(name) if name != "primary"))
        .collect();
    let long = &recorded.long[0];
    eprintln!(
        "sigkill/restart: {} new flows ({while_dead} while the agent was dead for {:?}), {} failed; \
         {} answers on the long connection",
        recorded.new_flows.len(),
        restarted - killed,
        failures.len(),
        long.len()
    );
    assert!(
        failures.is_empty(),
        "requests failed (time since the SIGKILL): {failures:?}\n{}",
        lab.diag()
    );
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    assert!(
        while_dead >= 20,
        "only {while_dead} requests while the agent was dead"
    );
    assert!(long.len() >= 10);
    for sample in long {
        assert_eq!(
            sample.result.as_deref(),
            Ok("primary"),
            "long connection at {:?} after the SIGKILL\n{}",
            sample.started.saturating_duration_since(killed),
            lab.diag()
        );
    }
    assert_eq!(
        backend_table(&lab),
        table,
        "the restarted agent changed backend ids or states"
    );
    assert_eq!(
        long_flow(&lab, &long_src),
        long_entries,
        "the long connection's flow entry changed"
    );
    assert_eq!(
        lab.counter("event_repick"),
        repicks,
        "flows were re-picked across the restart\n{}",
        lab.diag()
    );
}
