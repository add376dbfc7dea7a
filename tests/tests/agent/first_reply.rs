//! The first reply to a new client whose neighbour the edge host has not
//! resolved yet goes through the kernel stack (`pass_no_neighbour`), which
//! resolves it and forwards. It must arrive whether the VIP is also an
//! address of the edge host or not: with it, the kernel drops a forwarded
//! packet from one of its own addresses as a martian unless `accept_local`
//! is on, and the client's connection times out (it did, before the agent
//! turned it on).

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, BACKEND_PORT, VIP, request};

use crate::switch::tcp_probe;

/// One new connection after the edge host forgot the client's neighbour:
/// how long it took, and whether its first reply went through the stack.
fn first_connection(lab: &AgentLab) -> (Duration, u64) {
    lab.lb.ip(&["neigh", "flush", "all"]);
    // The data path's cached hops are looked up again after this bound.
    std::thread::sleep(
        Duration::from_nanos(failover_common::LAST_SEEN_GRANULARITY_NS)
            + Duration::from_millis(200),
    );
    let via_stack = lab.counter("pass_no_neighbour");
    let started = Instant::now();
    let answer = lab.client.run(|| request(Duration::from_secs(3)));
    let took = started.elapsed();
    assert!(
        answer.is_ok(),
        "the first connection failed: {answer:?}\n{}",
        lab.diag()
    );
    (took, lab.counter("pass_no_neighbour") - via_stack)
}

#[test]
fn the_first_reply_arrives_with_and_without_the_vip_on_the_edge_host() {
    let lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let (without, stacked) = first_connection(&lab);
    assert!(
        stacked > 0,
        "the first reply went through the stack\n{}",
        lab.diag()
    );
    lab.lb
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    // The agent checks the host's addresses at start and on reload.
    lab.ctl(&["reload"]);
    let (with, stacked) = first_connection(&lab);
    assert!(
        stacked > 0,
        "the first reply went through the stack\n{}",
        lab.diag()
    );
    eprintln!("first connection: {without:?} without the VIP on the edge host, {with:?} with it");
    // A lost first SYN-ACK costs the client a retransmission (1 s or more).
    for (took, case) in [(without, "without"), (with, "with")] {
        assert!(
            took < Duration::from_millis(500),
            "{case} the VIP on the edge host the first connection took {took:?}\n{}",
            lab.diag()
        );
    }
    assert!(
        !lab.log_lines("accept_local turned on").is_empty(),
        "the agent said what it changed\n{}",
        lab.diag()
    );
}
