//! The cases' forwarders, and one case's lab: namespaces, veths, addresses,
//! neighbours, and the forwarder under test on the edge host.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, HashMap},
    programs::{Xdp, XdpMode},
};
use failover::{AttachMode, BackendSpec, Dataplane, Proto, ServiceSpec};

use super::{
    BACKEND, BACKEND_PORT, FIRST_SOURCE_PORT, FRAME_LEN, GEN_ADDR, GEN_IF, GEN_MAC,
    GENERATED_FLOWS, LB_IN_IF, LB_IN_MAC, LB_OUT_IF, LB_OUT_MAC, SINK_IF, SINK_MAC, VIP, VIP_PORT,
    harness::load_harness,
};
use crate::{
    bench::{
        datapath::reference::{FlowTuple, Nat, raw},
        peers,
    },
    netns::{self, NetNs},
    packet::{Frame, L4},
    pins::PinDir,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Forwarder {
    /// The floor: generator straight into the sink.
    None,
    Ours(AttachMode),
    /// `bench_reference_redirect`: the same rewrite with the least work.
    ReferenceNat,
    NftDnat,
}

impl Forwarder {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::None => "floor: generator → sink, no forwarder",
            Self::Ours(AttachMode::Skb) => "ours, skb (generic) mode",
            Self::Ours(_) => "ours, native",
            Self::ReferenceNat => "reference: minimal NAT + redirect (native)",
            Self::NftDnat => "nftables DNAT (kernel forwarding)",
        }
    }

    /// What the sink should see as destination.
    pub(super) fn expected_dst(self) -> (Ipv4Addr, u16) {
        match self {
            Self::None => (VIP, VIP_PORT),
            _ => (BACKEND, BACKEND_PORT),
        }
    }
}

/// One case's namespaces and programs. Field order is drop order: the
/// harness (its sink link) and the data path detach before the pins and
/// namespaces go.
pub(super) struct Lab {
    pub(super) forwarder: Forwarder,
    pub(super) harness: Ebpf,
    pub(super) dataplane: Option<Dataplane>,
    _pins: Option<PinDir>,
    pub(super) gen_ns: NetNs,
    _lb: Option<NetNs>,
    _sink: NetNs,
    pub(super) gen_ifindex: u32,
    pub(super) frame: Vec<u8>,
}

pub(super) fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn new_namespace(role: &str) -> NetNs {
    let ns = NetNs::new(role);
    // No IPv6: no router solicitations or DAD probes reach the sink.
    ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
    ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
    ns
}

fn set_mac(ns: &NetNs, interface: &str, mac: [u8; 6]) {
    ns.ip(&["link", "set", "dev", interface, "address", &mac_text(mac)]);
}

/// The lb: addresses on both sides, forwarding on, and a permanent
/// neighbour for the backend so `bpf_fib_lookup` and the kernel resolve it
/// without ARP.
fn configure_lb(lb: &NetNs) {
    lb.ip(&["addr", "add", "192.0.2.1/24", "dev", LB_IN_IF]);
    lb.ip(&["addr", "add", "198.51.100.1/28", "dev", LB_OUT_IF]);
    lb.ip(&[
        "neigh",
        "add",
        &BACKEND.to_string(),
        "lladdr",
        &mac_text(SINK_MAC),
        "nud",
        "permanent",
        "dev",
        LB_OUT_IF,
    ]);
    lb.sysctl("net/ipv4/conf/all/forwarding", "1");
}

/// The generator's frame: UDP without checksum, so varying the source port
/// keeps it valid, padded to exactly `FRAME_LEN` bytes.
fn generated_frame(next_hop_mac: [u8; 6]) -> Vec<u8> {
    let l4 = L4::Udp {
        src_port: FIRST_SOURCE_PORT,
        dst_port: VIP_PORT,
        checksum: false,
    };
    let frame = Frame::new(GEN_ADDR, VIP, l4)
        .macs(GEN_MAC, next_hop_mac)
        .with_payload(&[0x5a; FRAME_LEN - 42])
        .build();
    assert_eq!(frame.len(), FRAME_LEN);
    frame
}

/// Our data path on `lbc`, with the UDP service to the backend.
fn start_ours(lb: &NetNs, mode: AttachMode) -> (Dataplane, PinDir) {
    let pins = PinDir::new();
    let mut dataplane = Dataplane::load(pins.path()).expect("load the data path");
    let used = lb
        .run(|| dataplane.attach(LB_IN_IF, mode))
        .expect("attach the forwarder");
    assert_eq!(used, mode, "attach mode");
    if mode == AttachMode::Skb {
        lb.enable_gro(LB_IN_IF);
    }
    dataplane
        .add_service(
            ServiceSpec::new(VIP, VIP_PORT, Proto::Udp),
            &[BackendSpec::new(BACKEND).port(BACKEND_PORT)],
        )
        .expect("add the udp service");
    (dataplane, pins)
}

/// The reference forwarder on `lbc`: one flow entry per generated flow,
/// each to the backend (the sink) out of `lbs`.
fn start_reference(lb: &NetNs, harness: &mut Ebpf) {
    let mut flows: HashMap<_, FlowTuple, Nat> =
        HashMap::try_from(harness.map_mut("BENCH_REF_FLOWS").expect("reference flows"))
            .expect("reference flows");
    for i in 0..GENERATED_FLOWS {
        let tuple = FlowTuple {
            src: raw(GEN_ADDR),
            dst: raw(VIP),
            src_port: (FIRST_SOURCE_PORT + i).to_be(),
            dst_port: VIP_PORT.to_be(),
            proto: 17,
        };
        let nat = Nat {
            addr: raw(BACKEND),
            port: BACKEND_PORT.to_be(),
            dst_mac: SINK_MAC,
            src_mac: LB_OUT_MAC,
            _pad: [0; 2],
        };
        flows.insert(tuple, nat, 0).expect("reference flow");
    }
    let mut egress: Array<_, u32> = Array::try_from(
        harness
            .map_mut("BENCH_REF_EGRESS")
            .expect("reference egress"),
    )
    .expect("reference egress");
    egress
        .set(0, lb.ifindex(LB_OUT_IF), 0)
        .expect("reference egress");
    let program: &mut Xdp = harness
        .program_mut("bench_reference_redirect")
        .expect("reference program")
        .try_into()
        .expect("reference program");
    program.load().expect("load the reference forwarder");
    lb.run(|| program.attach(LB_IN_IF, XdpMode::Driver))
        .expect("attach the reference forwarder");
}

pub(super) fn build_lab(forwarder: Forwarder) -> Lab {
    let gen_ns = new_namespace("rate-gen");
    let sink = new_namespace("rate-sink");
    let lb = (forwarder != Forwarder::None).then(|| new_namespace("rate-lb"));
    let next_hop_mac = match &lb {
        None => {
            netns::veth((&gen_ns, GEN_IF), (&sink, SINK_IF));
            SINK_MAC
        }
        Some(lb) => {
            netns::veth((&gen_ns, GEN_IF), (lb, LB_IN_IF));
            netns::veth((lb, LB_OUT_IF), (&sink, SINK_IF));
            set_mac(lb, LB_IN_IF, LB_IN_MAC);
            set_mac(lb, LB_OUT_IF, LB_OUT_MAC);
            configure_lb(lb);
            LB_IN_MAC
        }
    };
    set_mac(&gen_ns, GEN_IF, GEN_MAC);
    set_mac(&sink, SINK_IF, SINK_MAC);

    let frame = generated_frame(next_hop_mac);
    let mut harness = load_harness(&sink, &frame, forwarder.expected_dst());
    let (dataplane, pins) = match (forwarder, &lb) {
        (Forwarder::Ours(mode), Some(lb)) => {
            let (dataplane, pins) = start_ours(lb, mode);
            (Some(dataplane), Some(pins))
        }
        (Forwarder::ReferenceNat, Some(lb)) => {
            start_reference(lb, &mut harness);
            (None, None)
        }
        (Forwarder::NftDnat, Some(lb)) => {
            lb.enable_gro(LB_IN_IF);
            peers::apply_nft(
                lb,
                &peers::dnat_ruleset(
                    "udp",
                    &VIP.to_string(),
                    VIP_PORT,
                    &BACKEND.to_string(),
                    BACKEND_PORT,
                ),
            );
            (None, None)
        }
        _ => (None, None),
    };
    let gen_ifindex = gen_ns.ifindex(GEN_IF);
    Lab {
        forwarder,
        harness,
        dataplane,
        _pins: pins,
        gen_ns,
        _lb: lb,
        _sink: sink,
        gen_ifindex,
        frame,
    }
}
