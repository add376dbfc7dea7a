//! The data-path fixture table's harness: each row is a packet, the maps
//! it meets, the verdict, the exact output bytes and the counter deltas it
//! must produce, checked with BPF_PROG_TEST_RUN against the real program in
//! the kernel (the fixture lab: [`crate::lab::TestRunLab`] with the services
//! of [`setup`]).

use std::net::Ipv4Addr;

use failover::{BackendSpec, BackendState, Proto, ServiceSpec};
use failover_common::stats::{VERDICT_NAMES, reason};

use crate::{
    lab::*,
    packet::{self, Frame, Frame6},
};

pub use failover_common::stats::action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX};

/// Which interface of the edge host a packet arrives on.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    Clients,
    Backends,
}

#[derive(Debug)]
pub enum Expect {
    /// Output must equal the input byte for byte.
    Unchanged,
    /// Output must equal these bytes (built with fully recomputed checksums).
    Bytes(Vec<u8>),
}

pub struct Fixture {
    pub name: String,
    /// Packets sent first (e.g. the SYN that creates the flow).
    pub before: Vec<(Vec<u8>, Side)>,
    pub input: Vec<u8>,
    pub from: Side,
    pub verdict: u32,
    pub output: Expect,
    /// Reason counters that must move, by name, in packets. Every other
    /// reason must stay still.
    pub counters: Vec<&'static str>,
}

pub fn fixture(name: &str, input: Vec<u8>, from: Side, verdict: u32, output: Expect) -> Fixture {
    Fixture {
        name: name.into(),
        before: Vec::new(),
        input,
        from,
        verdict,
        output,
        counters: Vec::new(),
    }
}

impl Fixture {
    pub fn after(mut self, packet: Vec<u8>, from: Side) -> Self {
        self.before.push((packet, from));
        self
    }

    pub fn counts(mut self, reasons: &[&'static str]) -> Self {
        self.counters.extend_from_slice(reasons);
        self
    }
}

// Services of the fixture lab (all on the VIP).
pub const WEB: u16 = 80; // → BACKEND_1 (redirect to the backend side)
pub const DNS: u16 = 53; // udp → BACKEND_2:5353 (port-mapped)
pub const LOCAL: u16 = 8080; // → LOCAL_BACKEND (same segment as clients: XDP_TX)
pub const UNRESOLVED: u16 = 81; // → backend without neighbour entry
pub const UNREACHABLE: u16 = 82; // → backend behind an unreachable route
pub const DEAD: u16 = 83; // only backend is down
pub const SMALL_MTU: u16 = 84; // → backend behind a 600-byte MTU route
pub const EDGE_ITSELF: u16 = 85; // → the edge host's own address
pub const ENCAP: u16 = 86; // → backend behind an encap route

pub fn client(port: u16) -> (Ipv4Addr, u16) {
    (CLIENT, port)
}

pub fn vip(port: u16) -> (Ipv4Addr, u16) {
    (VIP, port)
}

/// A frame as the client sends it to the edge host.
pub fn from_client(frame: Frame) -> Frame {
    frame.macs(CLIENT_MAC, CLIENT_SIDE_MAC)
}

/// A frame as a backend on the backend side sends it to the edge host.
pub fn from_backend(frame: Frame, last_octet: u8) -> Frame {
    frame.macs(backend_mac(last_octet), BACKEND_SIDE_MAC)
}

pub fn syn(port: u16, service: u16) -> Frame {
    client_syn(port, service)
}

/// An IPv6 frame as the client sends it to the edge host.
pub fn from_client6(frame: Frame6) -> Frame6 {
    frame.macs(CLIENT_MAC, CLIENT_SIDE_MAC)
}

/// An IPv6 frame as a backend on the backend side sends it.
pub fn from_backend6(frame: Frame6, last_octet: u8) -> Frame6 {
    frame.macs(backend_mac(last_octet), BACKEND_SIDE_MAC)
}

/// The client's IPv6 SYN to `service` on the IPv6 VIP.
pub fn syn6(port: u16, service: u16) -> Frame6 {
    from_client6(Frame6::tcp(
        (CLIENT6, port),
        (VIP6, service),
        packet::TCP_SYN,
    ))
}

pub fn setup(lab: &mut TestRunLab) {
    let dp = &mut lab.dataplane;
    let tcp = |port| ServiceSpec::new(VIP, port, Proto::Tcp);
    dp.add_service(tcp(WEB), &[BackendSpec::new(BACKEND_1)])
        .unwrap();
    dp.add_service(
        ServiceSpec::new(VIP, DNS, Proto::Udp),
        &[BackendSpec::new(BACKEND_2).port(5353)],
    )
    .unwrap();
    dp.add_service(tcp(LOCAL), &[BackendSpec::new(LOCAL_BACKEND)])
        .unwrap();
    dp.add_service(tcp(UNRESOLVED), &[BackendSpec::new(UNRESOLVED_BACKEND)])
        .unwrap();
    dp.add_service(tcp(UNREACHABLE), &[BackendSpec::new(UNREACHABLE_BACKEND)])
        .unwrap();
    dp.add_service(
        tcp(DEAD),
        &[BackendSpec::new(BACKEND_3).state(BackendState::Down)],
    )
    .unwrap();
    dp.add_service(tcp(SMALL_MTU), &[BackendSpec::new(SMALL_MTU_BACKEND)])
        .unwrap();
    dp.add_service(tcp(EDGE_ITSELF), &[BackendSpec::new(EDGE_BACKEND_SIDE)])
        .unwrap();
    dp.add_service(tcp(ENCAP), &[BackendSpec::new(ENCAP_BACKEND)])
        .unwrap();
    let tcp6 = |port| ServiceSpec::new(VIP6, port, Proto::Tcp);
    dp.add_service(tcp6(WEB), &[BackendSpec::new(BACKEND6_1)])
        .unwrap();
    dp.add_service(
        ServiceSpec::new(VIP6, DNS, Proto::Udp),
        &[BackendSpec::new(BACKEND6_2).port(5353)],
    )
    .unwrap();
    dp.add_service(tcp6(SMALL_MTU), &[BackendSpec::new(SMALL_MTU_BACKEND6)])
        .unwrap();
}

pub fn ingress(lab: &TestRunLab, from: Side) -> u32 {
    match from {
        Side::Clients => lab.client_ifindex,
        Side::Backends => lab.backend_ifindex,
    }
}

/// Runs every row in one fixture lab, in order, and fails with every row
/// that did not behave.
pub fn run_table(rows: &[Fixture]) {
    let mut lab = TestRunLab::new();
    setup(&mut lab);
    run_rows(&lab, rows);
}

/// Runs every row in `lab` (set up, and changed as a test needs), in
/// order, and fails with every row that did not behave.
pub fn run_rows(lab: &TestRunLab, rows: &[Fixture]) {
    let mut failures = Vec::new();
    for row in rows {
        for (packet, from) in &row.before {
            lab.run(packet, ingress(lab, *from));
        }
        let reasons_before = lab.reasons();
        let verdicts_before = lab.verdicts();
        let result = lab.run(&row.input, ingress(lab, row.from));
        let reasons_after = lab.reasons();
        let verdicts_after = lab.verdicts();

        let mut problems = Vec::new();
        if result.action != row.verdict {
            problems.push(format!(
                "verdict {} (expected {})",
                VERDICT_NAMES[result.action as usize], VERDICT_NAMES[row.verdict as usize]
            ));
        }
        let expected_bytes = match &row.output {
            Expect::Unchanged => &row.input,
            Expect::Bytes(bytes) => bytes,
        };
        if &result.output != expected_bytes {
            problems.push(format!(
                "output differs\n     got {}\n    want {}",
                hex(&result.output),
                hex(expected_bytes)
            ));
        }
        if matches!(row.output, Expect::Bytes(_))
            && (packet::parse(&result.output).is_some()
                || packet::checksum_valid6(&result.output).is_some())
            && !packet::checksums_valid(&result.output)
        {
            problems.push("rewritten packet has invalid checksums".into());
        }
        for (index, name) in reason::NAMES.iter().enumerate() {
            let delta = reasons_after[index].packets - reasons_before[index].packets;
            let want = u64::from(row.counters.contains(name));
            if delta != want {
                problems.push(format!("counter {name} moved by {delta} (expected {want})"));
            }
        }
        for (action, name) in VERDICT_NAMES.iter().enumerate() {
            let delta = verdicts_after[action].packets - verdicts_before[action].packets;
            let want = u64::from(action as u32 == row.verdict);
            if delta != want {
                problems.push(format!(
                    "verdict counter {name} moved by {delta} (expected {want})"
                ));
            }
            let bytes = verdicts_after[action].bytes - verdicts_before[action].bytes;
            if want == 1 && bytes != row.input.len() as u64 {
                problems.push(format!(
                    "verdict bytes {bytes} (expected {})",
                    row.input.len()
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", row.name, problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
