//! `failover inspect explain` follows exactly the program's order and
//! rules: for random tuples against services, tracked flows (live and of
//! earlier owners of their ids), replies, drains, a dead-flow reset policy
//! and a service with no backend, its prediction is what the program then
//! does (BPF_PROG_TEST_RUN in the fixture lab; `FAILOVER_SEED` replays).

use std::{net::Ipv4Addr, process::Command};

use failover::{BackendSpec, BackendState, Proto, ServiceSpec, dataplane::ServiceSettings};
use failover_common::{SERVICE_F_RESET_DEAD_FLOWS, stats::reason};
use failover_tests::{
    lab::*,
    packet::{self, Frame, TCP_ACK, TCP_PSH},
    rng::Rng,
};
use serde_json::Value;

const TUPLES: usize = 300;
const PORTS: [u16; 6] = [80, 53, 81, 82, 99, 8080];
/// Every service's protocol and port (the one at 99 is removed later).
const SERVICES: [(&str, u16); 5] = [
    ("tcp", 80),
    ("udp", 53),
    ("tcp", 81),
    ("tcp", 82),
    ("udp", 99),
];
const CLIENT_PORTS: std::ops::Range<u16> = 40_000..40_012;

fn explain(pins: &std::path::Path, proto: &str, src: String, dst: String) -> Value {
    let output = Command::new(failover_tests::failover_bin())
        .arg("inspect")
        .arg("--pin-dir")
        .arg(pins)
        .args(["--json", "explain", proto, &src, &dst])
        .output()
        .expect("run failover inspect explain");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("json")
}

/// The path the program took, from the outcome counter that moved.
fn path_of(
    before: &[failover_common::Counter],
    after: &[failover_common::Counter],
) -> &'static str {
    let moved = |r: u32| after[r as usize].packets > before[r as usize].packets;
    for (r, path) in [
        (reason::FWD_NEW_FLOW, "new_flow"),
        (reason::FWD_ESTABLISHED, "established"),
        (reason::FWD_REPLY, "reply"),
        (reason::PASS_NO_SERVICE, "pass_no_service"),
        (reason::DROP_NO_BACKEND, "drop_no_backend"),
        (reason::TX_RESET, "tx_reset"),
    ] {
        if moved(r) {
            return path;
        }
    }
    "other"
}

#[test]
fn explain_agrees_with_the_program_for_random_tuples() {
    let (mut rng, seed) = Rng::from_env();
    let mut lab = TestRunLab::new();
    let dp = &mut lab.dataplane;
    let web = dp
        .add_service(
            ServiceSpec::new(VIP, 80, Proto::Tcp),
            &[BACKEND_1, BACKEND_2, BACKEND_3].map(BackendSpec::new),
        )
        .unwrap();
    let dns = dp
        .add_service(
            ServiceSpec::new(VIP, 53, Proto::Udp),
            &[BackendSpec::new(BACKEND_2).port(5353)],
        )
        .unwrap();
    let reset = dp
        .add_service_with(
            ServiceSpec::new(VIP, 81, Proto::Tcp),
            &[
                BackendSpec::new(BACKEND_1).port(8081),
                BackendSpec::new(BACKEND_2).port(8081).tier(1),
            ],
            ServiceSettings {
                flags: SERVICE_F_RESET_DEAD_FLOWS,
                ..Default::default()
            },
        )
        .unwrap();
    let dead = dp
        .add_service(
            ServiceSpec::new(VIP, 82, Proto::Tcp),
            &[BackendSpec::new(BACKEND_3).port(8082)],
        )
        .unwrap();
    let gone = dp
        .add_service(
            ServiceSpec::new(VIP, 99, Proto::Udp),
            &[BackendSpec::new(BACKEND_1).port(9999)],
        )
        .unwrap();
    let backends: Vec<(u32, std::net::IpAddr, Option<u16>)> = [&web, &dns, &reset, &dead, &gone]
        .iter()
        .flat_map(|e| e.backends.iter().map(|(id, b)| (*id, b.addr, b.port)))
        .collect();

    let frame = |proto: &str, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8| {
        let frame = if proto == "tcp" {
            Frame::tcp(src, dst, flags)
        } else {
            Frame::udp(src, dst)
        };
        frame.build()
    };
    let ingress = |lab: &TestRunLab, src: Ipv4Addr| {
        if src == CLIENT {
            lab.client_ifindex
        } else {
            lab.backend_ifindex
        }
    };

    // Tracked flows of every kind: live ones, then states that make some
    // re-picks, resets, drops, and flows of a removed service.
    for port in CLIENT_PORTS {
        for (proto, vport) in [
            ("tcp", 80),
            ("udp", 53),
            ("tcp", 81),
            ("tcp", 82),
            ("udp", 99),
        ] {
            // The client's first ACK records a TCP flow (a SYN does not).
            let f = frame(proto, (CLIENT, port), (VIP, vport), TCP_ACK);
            lab.run(&f, lab.client_ifindex);
        }
    }
    let id = |entry: &failover::dataplane::ServiceEntry, addr| {
        *entry
            .backends
            .iter()
            .find(|(_, b)| b.addr == addr)
            .unwrap()
            .0
    };
    lab.dataplane
        .set_backend_state(id(&web, BACKEND_2), BackendState::Draining)
        .unwrap();
    lab.dataplane
        .set_backend_state(id(&web, BACKEND_3), BackendState::Down)
        .unwrap();
    lab.dataplane
        .set_backend_state(id(&reset, BACKEND_1), BackendState::Down)
        .unwrap();
    lab.dataplane
        .set_backend_state(id(&dead, BACKEND_3), BackendState::Down)
        .unwrap();
    lab.dataplane.remove_service(gone.id).unwrap();

    let pins = lab.pins.path().to_owned();
    let mut paths = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..TUPLES {
        let (proto, service_port) = if rng.chance(70) {
            rng.pick(&SERVICES)
        } else {
            (rng.pick(&["tcp", "udp"]), rng.pick(&PORTS))
        };
        let client_port = rng.pick(&CLIENT_PORTS.collect::<Vec<_>>());
        // Client → VIP (or nowhere), or backend → client.
        let (src, dst) = if rng.chance(70) {
            ((CLIENT, client_port), (VIP, service_port))
        } else {
            let (_, addr, port) = rng.pick(&backends);
            let std::net::IpAddr::V4(addr) = addr else {
                unreachable!("the lab's backends are IPv4")
            };
            (
                (addr, port.unwrap_or_else(|| rng.pick(&PORTS))),
                (CLIENT, client_port),
            )
        };
        let predicted = explain(
            &pins,
            proto,
            format!("{}:{}", src.0, src.1),
            format!("{}:{}", dst.0, dst.1),
        );
        let before = lab.reasons();
        let result = lab.run(
            &frame(proto, src, dst, TCP_ACK | TCP_PSH),
            ingress(&lab, src.0),
        );
        let after = lab.reasons();
        let taken = path_of(&before, &after);
        let context =
            format!("seed {seed}, tuple {i}: {proto} {src:?} -> {dst:?}: explain said {predicted}");
        assert_eq!(predicted["path"], taken, "{context}");
        if taken == "new_flow" || taken == "established" {
            let out = packet::parse(&result.output).expect("a rewritten frame");
            // Port-mapped backends by their port; the others keep the
            // service port.
            let (id, _, _) = backends
                .iter()
                .find(|(_, addr, port)| *addr == out.dst && *port == Some(out.dst_port))
                .or_else(|| {
                    backends.iter().find(|(_, addr, port)| {
                        *addr == out.dst && port.is_none() && out.dst_port == dst.1
                    })
                })
                .unwrap_or_else(|| panic!("{context}: sent to {out:?}"));
            assert_eq!(predicted["backend"], *id, "{context}");
        }
        *paths.entry(taken).or_default() += 1;
    }
    eprintln!("seed {seed}: {TUPLES} tuples, paths {paths:?}");
    for path in [
        "new_flow",
        "established",
        "reply",
        "pass_no_service",
        "drop_no_backend",
        "tx_reset",
    ] {
        assert!(
            paths.contains_key(path),
            "seed {seed}: no tuple took {path}: {paths:?}"
        );
    }
}
