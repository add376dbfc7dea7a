//! The false failover the first round showed: under a SYN flood, a healthy
//! backend probed every 15 ms was marked down and its flows moved. Here ten
//! seconds of spoofed SYNs at the generator's full rate go through the
//! agent's lab, on the core the agent is pinned to, while clients keep
//! connecting. Whether the flood makes the agent's probes late (it makes
//! them time out when the edge host's kernel or the agent falls behind;
//! `decide::second_opinion` then keeps the backend, which the data path
//! sees completing the clients' handshakes) or not, no backend may be
//! ejected and no new flow may move. The count of failed probes is printed.

use std::time::Duration;

use failover_tests::{
    agent_lab::{
        AgentLab, BACKEND_PORT, Failback, Layout, Options, Probe, SERVICE_PORT, VIP, new_flows,
    },
    flood::Flood,
};

const FLOOD: Duration = Duration::from_secs(10);

#[test]
fn a_flood_on_the_agents_core_ejects_no_backend_completing_handshakes() {
    let _serial = crate::one_at_a_time();
    // Declared first, dropped last: the backends' door outlives the lab.
    let mut flood = Flood::syns((VIP, SERVICE_PORT));
    let layout = Layout::primary_standby()
        .probe_timing(Duration::from_millis(15), Duration::from_millis(10));
    let options = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let lab = AgentLab::start_layout_with_door(options, layout, flood.door(), |_, c| c);
    let failed_before = failover_tests::status::backend(&lab.status(), "web", "primary")
        .probe
        .failed_total;
    let load = new_flows(
        &lab.client,
        Duration::from_millis(10),
        // A SYN the flood crowds out of the client's veth ring is
        // retransmitted after a second.
        Duration::from_millis(2500),
    );
    // The agent shares the flood's core, as on an edge host whose agent
    // runs where the packets are processed.
    failover_tests::pin_process_to_one_cpu(lab.agent_pid());
    let ifindex = lab.client.ifindex(failover::lab::topology::PEER_IF);
    let sent = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                failover_tests::pin_to_one_cpu();
                flood.run(&lab.client, ifindex, FLOOD)
            })
            .join()
            .expect("the flood")
    });
    let recorded = load.finish();
    let status = lab.status();
    let primary = failover_tests::status::backend(&status, "web", "primary");
    let probes_failed = primary.probe.failed_total - failed_before;
    let answered: Vec<&String> = recorded
        .new_flows
        .iter()
        .filter_map(|s| s.result.as_ref().ok())
        .collect();
    let on_standby = answered.iter().filter(|n| **n != "primary").count();
    let failed = recorded.new_flows.len() - answered.len();
    let kept = lab.log_lines("kept healthy although its probes failed");
    let slow = lab.log_lines("probes failing");
    eprintln!(
        "flood: {} SYNs in {:.1} s ({:.2} Mpps) at {} at the door; the primary's probes: \
         {probes_failed} failed; kept {kept:#?}; slow {slow:#?}; legitimate: {} connections, \
         {failed} failed, {on_standby} on the standby",
        sent.frames,
        sent.seconds,
        sent.rate() / 1e6,
        flood.at_the_door(),
        recorded.new_flows.len(),
    );
    assert!(
        lab.log_lines("backend unhealthy").is_empty(),
        "a false ejection under the flood: {:#?}\n{}",
        lab.log_lines("backend unhealthy"),
        lab.diag()
    );
    assert_eq!(on_standby, 0, "new flows moved\n{}", lab.diag());
    assert!(
        failed * 100 <= recorded.new_flows.len(),
        "{failed} of {} legitimate connections failed",
        recorded.new_flows.len()
    );
}
