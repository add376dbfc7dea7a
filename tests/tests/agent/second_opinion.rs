//! Traffic as evidence of health: the primary's TCP probes (of its traffic
//! port) time out — answers to the agent's own address are dropped on the
//! primary's host — while clients' connections through the VIP complete
//! as ever. The data path sees the primary complete handshakes, so the
//! agent keeps it and says why; once the clients' answers are dropped too,
//! nothing contradicts the probes and it fails over.

use std::time::Duration;

use failover::lab::topology;
use failover_tests::agent_lab::{
    AgentLab, BACKEND_PORT, Failback, Options, PRIMARY, Probe, new_flows,
};

#[test]
fn probes_that_time_out_while_the_data_path_sees_handshakes_complete_eject_nothing() {
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Manual,
    });
    let load = new_flows(
        &lab.client,
        Duration::from_millis(10),
        Duration::from_millis(500),
    );
    // Answers to the agent's probes vanish; the clients' do not.
    let lb = topology::lb_backend_addr(PRIMARY).to_string();
    lab.backends[PRIMARY].ip(&["route", "add", "blackhole", &format!("{lb}/32")]);
    lab.wait_log(
        "kept healthy although its probes failed",
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_secs(1));
    let recorded = load.finish();
    let answered: Vec<&String> = recorded
        .new_flows
        .iter()
        .filter_map(|s| s.result.as_ref().ok())
        .collect();
    assert!(
        answered.iter().all(|name| *name == "primary"),
        "new flows moved: {:?}\n{}",
        answered.iter().filter(|n| **n != "primary").count(),
        lab.diag()
    );
    assert!(
        lab.log_lines("backend unhealthy").is_empty(),
        "{:#?}",
        lab.log_lines("backend unhealthy")
    );
    let kept = lab.log_lines("kept healthy");
    assert!(kept[0].contains("the probes' path failed"), "{kept:#?}");
    // The clients' answers vanish too: nothing contradicts the probes.
    lab.backends[PRIMARY].ip(&["route", "replace", "blackhole", "192.0.2.0/24"]);
    let moved = lab.sample_until("standby", Duration::from_secs(5));
    assert!(
        moved.reached().is_some(),
        "{}\n{}",
        moved.summary(),
        lab.diag()
    );
}
