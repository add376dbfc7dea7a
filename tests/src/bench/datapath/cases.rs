//! The data path's cases: frames, the services they meet and the results
//! they must produce.

use failover_common::stats::action::{XDP_PASS, XDP_REDIRECT};
use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use failover::{BackendSpec, Proto, ServiceSpec};

use super::FRAME_LEN;
use crate::{
    lab::{self, *},
    packet::{Frame, Frame6, TCP_ACK, TCP_SYN},
};

/// IPv6 frames are this long (the TCP header after 40 bytes of IPv6
/// header does not fit in `FRAME_LEN`).
pub(super) const FRAME6_LEN: usize = 96;

#[derive(Clone)]
pub(super) struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub from_backends: bool,
    pub verdict: u32,
    /// The output must be one of these (several: a table picks the backend).
    pub expected: Vec<Vec<u8>>,
    /// Every repetition gets a 5-tuple never seen before (new-flow path),
    /// with the conntrack table in this state.
    pub new_flow: Option<Conntrack>,
}

#[derive(Clone, Copy)]
pub(super) enum Conntrack {
    /// Below capacity: an insert takes a free entry.
    Filling,
    /// At capacity: every insert evicts the least recently used entry.
    Full,
}

/// New flows per round while the table fills: rounds x this entries stays
/// well below its capacity.
pub(super) const FILLING_REPEAT: u32 = 4_000;

/// Runs enough new flows through `wrapper` to fill the flow table (the
/// template must be a packet that records its flow, a first ACK).
pub(super) fn fill_conntrack(lab: &TestRunLab, wrapper: &Xdp, frame: &[u8], ingress: u32) {
    let ctx = lab::xdp_md(frame.len() as u32, ingress);
    lab.ns.run(|| {
        wrapper
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat: failover_common::DEFAULT_MAX_FLOWS,
                ..TestRunOptions::new()
            })
            .expect("fill the flow table")
    });
}

fn padded(frame: Frame) -> Frame {
    // 14 + 20 + 20 (TCP) or 8 (UDP) header bytes; pad to exactly FRAME_LEN.
    let headers = match frame.l4 {
        crate::packet::L4::Tcp { .. } => 54,
        _ => 42,
    };
    let payload = vec![0x5a; FRAME_LEN - headers];
    frame.with_payload(&payload)
}

fn padded6(frame: Frame6) -> Frame6 {
    let payload = vec![0x5a; FRAME6_LEN - 14 - 40 - 20];
    frame.with_payload(&payload)
}

/// The cases the reference programs stand beside, and the established
/// flow's client.
pub(super) const ESTABLISHED: &str = "tcp established (conntrack hit)";
pub(super) const SYN_FILLING: &str = "tcp syn, new tuple: no Maglev table (table filling)";
pub(super) const ESTABLISHED6: &str = "ipv6 tcp established (conntrack hit)";
pub(super) const SYN6: &str = "ipv6 tcp syn, new tuple: no Maglev table (table filling)";
pub(super) const NOT_FOR_A_SERVICE: &str = "non-vip tcp (pass)";
pub(super) const ESTABLISHED_CLIENT: (Ipv4Addr, u16) = (CLIENT, 41000);

pub(super) fn cases() -> (Vec<(Vec<u8>, bool)>, Vec<Case>) {
    let client = ESTABLISHED_CLIENT;
    let ack = padded(Frame::tcp(client, (VIP, 80), TCP_ACK).macs(CLIENT_MAC, CLIENT_SIDE_MAC));
    let reply = padded(
        Frame::tcp((BACKEND_1, 80), client, TCP_ACK).macs(backend_mac(11), BACKEND_SIDE_MAC),
    );
    let udp = padded(Frame::udp((CLIENT, 5000), (VIP, 53)).macs(CLIENT_MAC, CLIENT_SIDE_MAC));
    let other = padded(
        Frame::tcp(client, (Ipv4Addr::new(203, 0, 113, 99), 80), TCP_ACK)
            .macs(CLIENT_MAC, CLIENT_SIDE_MAC),
    );
    // Flows exist before measuring: the established paths are conntrack hits.
    let warmup = vec![(ack.clone().build(), false), (udp.clone().build(), false)];
    let mut cases = vec![
        Case {
            name: ESTABLISHED,
            expected: vec![
                ack.clone()
                    .with_dst(BACKEND_1, 80)
                    .routed(BACKEND_SIDE_MAC, backend_mac(11))
                    .build(),
            ],
            frame: ack.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: "tcp backend reply (reverse nat)",
            expected: vec![
                reply
                    .clone()
                    .with_src(VIP, 80)
                    .routed(CLIENT_SIDE_MAC, CLIENT_MAC)
                    .build(),
            ],
            frame: reply.build(),
            from_backends: true,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: "udp established, port-mapped",
            expected: vec![
                udp.clone()
                    .with_dst(BACKEND_2, 5353)
                    .routed(BACKEND_SIDE_MAC, backend_mac(12))
                    .build(),
            ],
            frame: udp.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: NOT_FOR_A_SERVICE,
            expected: vec![other.clone().build()],
            frame: other.build(),
            from_backends: false,
            verdict: XDP_PASS,
            new_flow: None,
        },
    ];
    cases.extend(new_flow_cases());
    let (warmup6, cases6) = ipv6_cases();
    (
        warmup.into_iter().chain(warmup6).collect(),
        cases.into_iter().chain(cases6).collect(),
    )
}

/// The IPv6 twins of the established, reply and new-flow cases.
fn ipv6_cases() -> (Vec<(Vec<u8>, bool)>, Vec<Case>) {
    let client = (CLIENT6, 41000);
    let ack = padded6(Frame6::tcp(client, (VIP6, 80), TCP_ACK).macs(CLIENT_MAC, CLIENT_SIDE_MAC));
    let reply = padded6(
        Frame6::tcp((BACKEND6_1, 80), client, TCP_ACK).macs(backend_mac(11), BACKEND_SIDE_MAC),
    );
    let syn = padded6(
        Frame6::tcp((CLIENT6, 42000), (VIP6, SELECTION_PORT), TCP_SYN)
            .macs(CLIENT_MAC, CLIENT_SIDE_MAC),
    );
    let to_backend = |frame: &Frame6, port| {
        frame
            .clone()
            .with_dst(BACKEND6_1, port)
            .routed(BACKEND_SIDE_MAC, backend_mac(11))
            .build()
    };
    let cases = vec![
        Case {
            name: ESTABLISHED6,
            expected: vec![to_backend(&ack, 80)],
            frame: ack.clone().build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: "ipv6 tcp backend reply (reverse nat)",
            expected: vec![
                reply
                    .clone()
                    .with_src(VIP6, 80)
                    .routed(CLIENT_SIDE_MAC, CLIENT_MAC)
                    .build(),
            ],
            frame: reply.build(),
            from_backends: true,
            verdict: XDP_REDIRECT,
            new_flow: None,
        },
        Case {
            name: SYN6,
            expected: vec![to_backend(&syn, SELECTION_PORT)],
            frame: syn.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            new_flow: Some(Conntrack::Filling),
        },
    ];
    (vec![(ack.build(), false)], cases)
}

/// SYNs of new flows into the two services that differ only in how the
/// backend is chosen (see `add_services`).
fn new_flow_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, port, flags, backends, table) in [
        (
            SYN_FILLING,
            SELECTION_PORT,
            TCP_SYN,
            &[BACKEND_1][..],
            Conntrack::Filling,
        ),
        (
            "tcp syn, new tuple: Maglev table, 3 backends, active-active (table filling)",
            MAGLEV_PORT,
            TCP_SYN,
            &[BACKEND_1, BACKEND_2, BACKEND_3][..],
            Conntrack::Filling,
        ),
        (
            "tcp syn, new tuple: no Maglev table (table full)",
            SELECTION_PORT,
            TCP_SYN,
            &[BACKEND_1][..],
            Conntrack::Full,
        ),
        (
            "tcp first ack, flow recorded: no Maglev table (table filling)",
            SELECTION_PORT,
            TCP_ACK,
            &[BACKEND_1][..],
            Conntrack::Filling,
        ),
        (
            "tcp first ack, flow recorded: no Maglev table (table full, each insert evicts)",
            SELECTION_PORT,
            TCP_ACK,
            &[BACKEND_1][..],
            Conntrack::Full,
        ),
    ] {
        let first = padded(
            Frame::tcp((CLIENT, 42000), (VIP, port), flags).macs(CLIENT_MAC, CLIENT_SIDE_MAC),
        );
        let expected = backends
            .iter()
            .map(|&backend| {
                let last = backend.octets()[3];
                first
                    .clone()
                    .with_dst(backend, port)
                    .routed(BACKEND_SIDE_MAC, backend_mac(last))
                    .build()
            })
            .collect();
        cases.push(Case {
            name,
            frame: first.build(),
            from_backends: false,
            verdict: XDP_REDIRECT,
            expected,
            new_flow: Some(table),
        });
    }
    cases
}

/// Offset of the TCP flags in the cases' untagged frames (IPv4 or IPv6).
fn tcp_flags_at(frame: &[u8]) -> usize {
    if frame.len() == FRAME6_LEN {
        14 + 40 + 13
    } else {
        14 + 20 + 13
    }
}

/// Whether the case's frame is a TCP SYN, which records no flow.
pub(super) fn is_syn(frame: &[u8]) -> bool {
    frame[tcp_flags_at(frame)] & crate::packet::TCP_SYN != 0
}

/// The frame with other TCP flags (checksums left stale: the program
/// under test never validates them).
pub(super) fn with_tcp_flags(frame: &[u8], flags: u8) -> Vec<u8> {
    let at = tcp_flags_at(frame);
    let mut frame = frame.to_vec();
    frame[at] = flags;
    frame
}

/// The new-flow services: selection only (no table), and Maglev over three
/// backends; port 80 (one backend: no table needed) serves the other cases.
const SELECTION_PORT: u16 = 81;
const MAGLEV_PORT: u16 = 82;

pub(super) fn add_services(lab: &mut TestRunLab) {
    // The new-flow cases record hundreds of thousands of flows a second on
    // one CPU: the flood guard would stop them and time itself instead.
    lab.dataplane
        .set_flow_settings(&failover_common::Settings {
            max_new_flows_per_cpu: u32::MAX,
            ..Default::default()
        })
        .expect("flow settings");
    let tcp = |port| ServiceSpec::new(VIP, port, Proto::Tcp);
    let dp = &mut lab.dataplane;
    dp.add_service(tcp(80), &[BackendSpec::new(BACKEND_1)])
        .expect("tcp service");
    dp.add_service(
        ServiceSpec::new(VIP, 53, Proto::Udp),
        &[BackendSpec::new(BACKEND_2).port(5353)],
    )
    .expect("udp service");
    let selection = dp
        .add_service(tcp(SELECTION_PORT), &[BackendSpec::new(BACKEND_1)])
        .expect("selection service");
    let no_table = failover::dataplane::ServiceSettings {
        table_size: 0,
        ..Default::default()
    };
    dp.set_settings(selection.id, no_table).expect("no table");
    dp.add_service(
        tcp(MAGLEV_PORT),
        &[BACKEND_1, BACKEND_2, BACKEND_3].map(BackendSpec::new),
    )
    .expect("maglev service");
    let tcp6 = |port| ServiceSpec::new(VIP6, port, Proto::Tcp);
    dp.add_service(tcp6(80), &[BackendSpec::new(BACKEND6_1)])
        .expect("ipv6 tcp service");
    let selection6 = dp
        .add_service(tcp6(SELECTION_PORT), &[BackendSpec::new(BACKEND6_1)])
        .expect("ipv6 selection service");
    dp.set_settings(selection6.id, no_table).expect("no table");
}
