//! Ids freed by a removed service or backend never carry old flows to their
//! next owner (BPF_PROG_TEST_RUN in the fixture lab, through the same
//! `Dataplane` calls a reload makes).
//!
//! A conntrack entry names its backend by id. When a reload removes service
//! A and adds service B, B may get A's freed ids; a client that had talked
//! to A must then meet "no service" at A's VIP, not B's backend, and B's
//! per-id counters start from zero.

use failover_common::stats::action::{XDP_PASS, XDP_REDIRECT};
use std::net::Ipv4Addr;

use failover::{BackendSpec, Proto, ServiceSpec};
use failover_common::stats::reason;
use failover_tests::{lab::*, packet::Frame};

const VIP_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);

fn datagram_to_a() -> Vec<u8> {
    Frame::udp((CLIENT, 40_000), (VIP, 53))
        .macs(CLIENT_MAC, CLIENT_SIDE_MAC)
        .build()
}

fn reason_count(lab: &TestRunLab, index: u32) -> u64 {
    lab.reasons()[index as usize].packets
}

#[test]
fn a_removed_services_flows_never_reach_the_service_that_reuses_its_ids() {
    let mut lab = TestRunLab::new();
    let a = lab
        .dataplane
        .add_service(
            ServiceSpec::new(VIP, 53, Proto::Udp),
            &[BackendSpec::new(BACKEND_1)],
        )
        .expect("add A");
    let sent = lab.run(&datagram_to_a(), lab.client_ifindex);
    assert_eq!(
        sent.action, XDP_REDIRECT,
        "A forwards its client's datagram"
    );

    lab.dataplane.remove_service(a.id).expect("remove A");
    // A later change (a reload takes a snapshot first): freed ids are
    // handed out again.
    let _ = lab.dataplane.snapshot();
    let b = lab
        .dataplane
        .add_service(
            ServiceSpec::new(VIP_B, 5353, Proto::Udp),
            &[BackendSpec::new(BACKEND_2).port(9999)],
        )
        .expect("add B");
    // The case under test: B took A's ids (otherwise nothing is shown).
    assert_eq!(b.id, a.id, "B reuses A's service id");
    assert_eq!(
        b.backends.keys().collect::<Vec<_>>(),
        a.backends.keys().collect::<Vec<_>>(),
        "B reuses A's backend id"
    );
    let backend_id = *b.backends.keys().next().unwrap();
    let b_stats = lab.dataplane.counters().backend(backend_id).unwrap();
    assert_eq!(
        b_stats.to_backend.packets, 0,
        "a reused backend id starts its counters from zero"
    );
    let service_stats = lab.dataplane.counters().service(b.id).unwrap();
    assert_eq!(
        service_stats.to_backend.packets, 0,
        "a reused service id starts its counters from zero"
    );

    let no_service = reason_count(&lab, reason::PASS_NO_SERVICE);
    let frame = datagram_to_a();
    let again = lab.run(&frame, lab.client_ifindex);
    assert_eq!(
        (again.action, again.output == frame),
        (XDP_PASS, true),
        "A's client, writing to A's removed VIP, must meet no service (untouched, to the stack), \
         not B's backend: output {:02x?}",
        again.output
    );
    assert_eq!(reason_count(&lab, reason::PASS_NO_SERVICE), no_service + 1);
    let b_stats = lab.dataplane.counters().backend(backend_id).unwrap();
    assert_eq!(b_stats.to_backend.packets, 0, "nothing reached B's backend");
}

#[test]
fn a_removed_services_reverse_nat_never_translates_its_successors_replies() {
    let mut lab = TestRunLab::new();
    // A sends to BACKEND_1:5353, whose reverse NAT names A's VIP.
    let a = lab
        .dataplane
        .add_service(
            ServiceSpec::new(VIP, 53, Proto::Udp),
            &[BackendSpec::new(BACKEND_1).port(5353)],
        )
        .expect("add A");
    let sent = lab.run(&datagram_to_a(), lab.client_ifindex);
    assert_eq!(sent.action, XDP_REDIRECT);
    lab.dataplane.remove_service(a.id).expect("remove A");
    let _ = lab.dataplane.snapshot();
    // B uses the same backend endpoint behind another VIP.
    lab.dataplane
        .add_service(
            ServiceSpec::new(VIP_B, 5353, Proto::Udp),
            &[BackendSpec::new(BACKEND_1).port(5353)],
        )
        .expect("add B");
    // A datagram from that backend to A's old client: the endpoint is B's
    // now (replies find their VIP by the endpoint), so it leaves as B's
    // VIP, never as A's.
    let stray = Frame::udp((BACKEND_1, 5353), (CLIENT, 40_000))
        .macs(backend_mac(11), BACKEND_SIDE_MAC)
        .build();
    let result = lab.run(&stray, lab.backend_ifindex);
    let parsed = failover_tests::packet::parse(&result.output).expect("a frame");
    assert_ne!(
        parsed.src, VIP,
        "a removed service's reverse NAT rewrote a packet to its VIP"
    );
    assert_eq!(result.action, XDP_REDIRECT, "a reply of B's endpoint");
    assert_eq!((parsed.src, parsed.src_port), (VIP_B, 5353));
}
