//! The BPF_PROG_TEST_RUN lab: one namespace with an edge host's two
//! interfaces, static neighbours and routes, so `bpf_fib_lookup` inside the
//! program gives deterministic next hops and the fixtures can expect exact
//! output bytes.
//!
//! ```text
//!   clients 192.0.2.0/24 ── fxc [edge] fxb ── 198.51.100.0/24 backends
//!   VIP 203.0.113.10, 198.18.0.0/15 unreachable but for
//!   198.18.1.0/24 (MTU 600, locked: only a locked route MTU is checked by
//!   the lookup) and 198.18.2.0/24 (an `encap ip` route), both
//!   via 198.51.100.11
//!
//!   IPv6 alike: clients 2001:db8:c::/64, backends 2001:db8:b::/64,
//!   VIP 2001:db8:10::10, 2001:db8:18::/48 unreachable but for
//!   2001:db8:18:1::/64 (MTU 1280, locked) via 2001:db8:b::11
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions};
use failover::{BackendSpec, Dataplane, Proto, ServiceSpec, dataplane::ServiceEntry};
use failover_common::Counter;

use crate::{netns::NetNs, pins::PinDir};

pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// A backend on the clients' segment: replies to it leave where they came in.
pub const LOCAL_BACKEND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
pub const BACKEND_1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
pub const BACKEND_2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
pub const BACKEND_3: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 13);
/// On a connected subnet but with no neighbour entry.
pub const UNRESOLVED_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// Behind an `unreachable` route.
pub const UNREACHABLE_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Behind a route with a 600-byte MTU (via BACKEND_1).
pub const SMALL_MTU_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// Behind a route with a lightweight-tunnel encapsulation, which the
/// kernel's route lookup for XDP does not support.
pub const ENCAP_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The edge host's own address on the backend side: not forwarded.
pub const EDGE_BACKEND_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2);
pub const BACKEND6_1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0x11);
pub const BACKEND6_2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0x12);
pub const BACKEND6_3: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0x13);
/// Behind a route with a 1280-byte MTU (via BACKEND6_1).
pub const SMALL_MTU_BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 1, 0, 0, 0, 1);

pub const CLIENT_SIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x0c];
pub const BACKEND_SIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x0b];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x02];
pub const LOCAL_BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0c, 0x50];

/// MAC of backend `198.51.100.x`.
pub const fn backend_mac(last_octet: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x0b, last_octet]
}

pub const CLIENT_SIDE: &str = "fxc";
pub const BACKEND_SIDE: &str = "fxb";

/// Result of one program run.
#[derive(Debug)]
pub struct RunResult {
    pub action: u32,
    pub output: Vec<u8>,
}

/// Field order matters: the data path (and its fds) goes before the pins and
/// the namespace.
pub struct TestRunLab {
    pub dataplane: Dataplane,
    pub pins: PinDir,
    pub ns: NetNs,
    pub client_ifindex: u32,
    pub backend_ifindex: u32,
}

impl TestRunLab {
    pub fn new() -> Self {
        crate::require_root();
        let ns = NetNs::new("fx");
        for (side, peer, mac, addr, addr6) in [
            (
                CLIENT_SIDE,
                "fxcp",
                CLIENT_SIDE_MAC,
                "192.0.2.1/24",
                "2001:db8:c::1/64",
            ),
            (
                BACKEND_SIDE,
                "fxbp",
                BACKEND_SIDE_MAC,
                "198.51.100.1/24",
                "2001:db8:b::1/64",
            ),
        ] {
            ns.ip(&["link", "add", side, "type", "veth", "peer", "name", peer]);
            ns.ip(&["link", "set", side, "address", &mac_string(mac)]);
            ns.ip(&["addr", "add", addr, "dev", side]);
            ns.ip(&["addr", "add", addr6, "dev", side, "nodad"]);
            ns.ip(&["link", "set", peer, "up"]);
            ns.ip(&["link", "set", side, "up"]);
        }
        let neighbours = [
            (CLIENT, CLIENT_MAC, CLIENT_SIDE),
            (LOCAL_BACKEND, LOCAL_BACKEND_MAC, CLIENT_SIDE),
            (BACKEND_1, backend_mac(11), BACKEND_SIDE),
            (BACKEND_2, backend_mac(12), BACKEND_SIDE),
            (BACKEND_3, backend_mac(13), BACKEND_SIDE),
        ];
        let neighbours6 = [
            (CLIENT6, CLIENT_MAC, CLIENT_SIDE),
            (BACKEND6_1, backend_mac(11), BACKEND_SIDE),
            (BACKEND6_2, backend_mac(12), BACKEND_SIDE),
            (BACKEND6_3, backend_mac(13), BACKEND_SIDE),
        ];
        let neighbours = neighbours
            .iter()
            .map(|(a, m, d)| (std::net::IpAddr::from(*a), *m, *d))
            .chain(neighbours6.iter().map(|(a, m, d)| ((*a).into(), *m, *d)));
        for (addr, mac, dev) in neighbours {
            ns.ip(&[
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac_string(mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        ns.ip(&["route", "add", "unreachable", "198.18.0.0/15"]);
        let via = BACKEND_1.to_string();
        ns.ip(&[
            "route",
            "add",
            "198.18.1.0/24",
            "via",
            &via,
            "dev",
            BACKEND_SIDE,
            "mtu",
            "lock",
            "600",
        ]);
        ns.ip(&[
            "route",
            "add",
            "198.18.2.0/24",
            "encap",
            "ip",
            "id",
            "5",
            "dst",
            &via,
            "via",
            &via,
            "dev",
            BACKEND_SIDE,
        ]);
        ns.ip(&["-6", "route", "add", "unreachable", "2001:db8:18::/48"]);
        ns.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:18:1::/64",
            "via",
            &BACKEND6_1.to_string(),
            "dev",
            BACKEND_SIDE,
            "mtu",
            "lock",
            "1280",
        ]);
        ns.sysctl("net/ipv4/conf/all/forwarding", "1");
        ns.sysctl("net/ipv6/conf/all/forwarding", "1");
        let pins = PinDir::new();
        let dataplane = Dataplane::load(pins.path()).expect("load the data path");
        Self {
            client_ifindex: ns.ifindex(CLIENT_SIDE),
            backend_ifindex: ns.ifindex(BACKEND_SIDE),
            dataplane,
            pins,
            ns,
        }
    }

    /// A new lab with one TCP service, the VIP's `port` on `backends`: the
    /// lab and the service's entry (its id and its backends' ids).
    pub fn with_tcp_service(port: u16, backends: &[BackendSpec]) -> (Self, ServiceEntry) {
        Self::with_tcp_service_on(VIP, port, backends)
    }

    /// [`Self::with_tcp_service`] on another VIP (e.g. [`VIP6`]).
    pub fn with_tcp_service_on(
        vip: impl Into<std::net::IpAddr>,
        port: u16,
        backends: &[BackendSpec],
    ) -> (Self, ServiceEntry) {
        let mut lab = Self::new();
        let entry = lab
            .dataplane
            .add_service(ServiceSpec::new(vip, port, Proto::Tcp), backends)
            .unwrap();
        (lab, entry)
    }

    /// Runs the forwarding program once on `frame` as if received on
    /// `ingress_ifindex`, inside the lab namespace (route lookups see it).
    pub fn run(&self, frame: &[u8], ingress_ifindex: u32) -> RunResult {
        let program = self.dataplane.program().expect("program");
        self.ns.run(|| run_xdp(program, frame, ingress_ifindex))
    }

    /// Outcome/event counters, indexed by `stats::reason`.
    pub fn reasons(&self) -> Vec<Counter> {
        self.dataplane.counters().reasons().expect("read reasons")
    }

    /// Verdict counters, indexed by XDP action.
    pub fn verdicts(&self) -> Vec<Counter> {
        self.dataplane.counters().verdicts().expect("read verdicts")
    }
}

impl Default for TestRunLab {
    fn default() -> Self {
        Self::new()
    }
}

/// The id the service `entry` gave its backend at `addr`.
pub fn backend_id(entry: &ServiceEntry, addr: impl Into<std::net::IpAddr>) -> u32 {
    let addr = addr.into();
    *entry
        .backends
        .iter()
        .find(|(_, spec)| spec.addr == addr)
        .unwrap_or_else(|| panic!("no backend at {addr} in service {}", entry.id))
        .0
}

/// One BPF_PROG_TEST_RUN of `program` with an xdp_md naming the ingress
/// interface (which must exist in the calling thread's namespace).
pub fn run_xdp(program: &aya::programs::Xdp, frame: &[u8], ingress_ifindex: u32) -> RunResult {
    let ctx = xdp_md(frame.len() as u32, ingress_ifindex);
    // Room for growth (the program never grows frames, but a bug should not
    // turn into ENOSPC here).
    let mut output = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut output),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN");
    output.truncate(result.data_size_out as usize);
    RunResult {
        action: result.return_value,
        output,
    }
}

/// `struct xdp_md` for test runs: data 0, data_end = length, ingress ifindex.
pub fn xdp_md(len: u32, ingress_ifindex: u32) -> [u8; 24] {
    let fields = [0u32, len, 0, ingress_ifindex, 0, 0];
    let mut bytes = [0u8; 24];
    for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    bytes
}

/// A TCP SYN from the lab's client (source port `client_port`) to the VIP's
/// `service_port`, as it arrives on the client side.
pub fn client_syn(client_port: u16, service_port: u16) -> crate::packet::Frame {
    crate::packet::Frame::tcp(
        (CLIENT, client_port),
        (VIP, service_port),
        crate::packet::TCP_SYN,
    )
    .macs(CLIENT_MAC, CLIENT_SIDE_MAC)
}

/// The flow-table key of that client's TCP flow to the VIP.
pub fn client_flow_key(client_port: u16, service_port: u16) -> failover_common::FlowKey {
    failover_common::FlowKey::ipv4(
        failover_common::ipv4_addr(CLIENT.octets()),
        failover_common::ipv4_addr(VIP.octets()),
        client_port.to_be(),
        service_port.to_be(),
        failover_common::PROTO_TCP,
    )
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
