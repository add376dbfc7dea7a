//! The flood guard's episodes in the agent's log: one line when the guard
//! starts refusing new flows, one when it has refused none for a while,
//! however many bursts fall in between. The bursts are spoofed first ACKs
//! (each would record a flow), live frames from the client's side, far
//! above the lowest guard rate the configuration allows.

use std::time::{Duration, Instant};

use failover::lab::topology::PEER_IF;
use failover_tests::{
    agent_lab::{AgentLab, BACKEND_PORT, SERVICE_PORT, VIP},
    flood::Flood,
};

use crate::switch::tcp_probe;

const ON: &str = "the flood guard is on";
const OFF: &str = "the flood guard is off again";
/// Frames per burst: far more than one CPU may record in a second.
const BURST: u32 = 5_000;

/// Waits (bounded) until the log has `count` lines with `pattern`.
fn wait_lines(lab: &AgentLab, pattern: &str, count: usize, bound: Duration) {
    let started = Instant::now();
    while lab.log_lines(pattern).len() < count {
        assert!(
            started.elapsed() < bound,
            "fewer than {count} {pattern:?} lines within {bound:?}\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_flood_guard_episode_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let lab = AgentLab::start_with(tcp_probe(BACKEND_PORT), |_, config| {
        config.max_new_flows_per_cpu(1_000)
    });
    let flood = Flood::first_acks((VIP, SERVICE_PORT));
    let client_if = lab.client.ifindex(PEER_IF);
    let refused = lab.counter("event_flood_guard_skip");

    flood.burst(&lab.client, client_if, BURST);
    wait_lines(&lab, ON, 1, Duration::from_secs(3));
    // More refusals within the episode: no second line.
    flood.burst(&lab.client, client_if, BURST);
    let refused = lab.counter("event_flood_guard_skip") - refused;
    assert!(
        refused >= u64::from(BURST),
        "only {refused} refusals of two bursts of {BURST}\n{}",
        lab.diag()
    );
    wait_lines(&lab, OFF, 1, Duration::from_secs(5));
    let on = lab.log_lines(ON);
    let off = lab.log_lines(OFF);
    assert_eq!((on.len(), off.len()), (1, 1), "{on:#?}\n{off:#?}");
    assert!(
        off[0].contains(&format!("refused={refused}")),
        "the end of the episode counts every refusal ({refused}): {}",
        off[0]
    );

    // A later burst is a new episode.
    flood.burst(&lab.client, client_if, BURST);
    wait_lines(&lab, ON, 2, Duration::from_secs(3));
    wait_lines(&lab, OFF, 2, Duration::from_secs(5));
    // The lab's veths are no VLAN devices (the egress watch marks those).
    assert!(lab.log_lines("a VLAN device").is_empty(), "{}", lab.diag());
    // And connections still work.
    lab.client
        .run(|| failover_tests::agent_lab::request(Duration::from_secs(3)))
        .expect("a connection through the VIP after the floods");
}
