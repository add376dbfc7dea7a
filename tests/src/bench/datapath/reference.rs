//! The reference programs (`failover-bench-ebpf/src/reference.rs`): their
//! maps filled for the benchmark's frames, and what each must return — the
//! NAT reference the very bytes our data path produces for an established
//! packet, the pass reference the frame unchanged.

use std::net::Ipv4Addr;

use aya::{Ebpf, maps::HashMap};
use failover_common::stats::action::{XDP_PASS, XDP_TX};

use super::cases::{Case, ESTABLISHED, NOT_FOR_A_SERVICE};
use crate::lab::{BACKEND_1, BACKEND_SIDE_MAC, VIP, backend_mac};

/// The maps' layouts, as the programs declare them (network-order fields
/// loaded into native integers).
/// Key of `BENCH_REF_FLOWS` (network-order fields), as the harness has it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(in crate::bench) struct FlowTuple {
    pub src: u32,
    pub dst: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u32,
}

/// Value of `BENCH_REF_FLOWS`, as the harness has it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(in crate::bench) struct Nat {
    pub addr: u32,
    pub port: u16,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Destination {
    addr: u32,
    port: u16,
    proto: u16,
}

// SAFETY: plain C layouts without padding holes the kernel could read
// uninitialised (every field written; `_pad` explicit).
unsafe impl aya::Pod for FlowTuple {}
// SAFETY: as above.
unsafe impl aya::Pod for Nat {}
// SAFETY: as above.
unsafe impl aya::Pod for Destination {}

const TCP: u8 = 6;

/// An address as its network-order bytes in a native integer.
pub(in crate::bench) fn raw(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// A reference program, the frame it is measured with and its result.
pub(super) struct Reference {
    pub name: &'static str,
    pub program: &'static str,
    pub frame: Vec<u8>,
    pub verdict: u32,
    pub expected: Vec<u8>,
}

/// The references, on the frames of the cases they stand beside.
pub(super) fn references(cases: &[Case]) -> Vec<Reference> {
    let case = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name}"))
    };
    let established = case(ESTABLISHED);
    let other = case(NOT_FOR_A_SERVICE);
    vec![
        Reference {
            name: "reference: minimal NAT",
            program: "bench_reference_nat",
            frame: established.frame.clone(),
            verdict: XDP_TX,
            expected: established.expected[0].clone(),
        },
        Reference {
            name: "reference: minimal pass",
            program: "bench_reference_pass",
            frame: other.frame.clone(),
            verdict: XDP_PASS,
            expected: other.frame.clone(),
        },
    ]
}

/// Fills the references' maps: the established flow of the cases (client
/// 192.0.2.2:41000 → VIP:80, to backend 1) and the VIP's TCP service.
pub(super) fn fill_maps(harness: &mut Ebpf, client: (Ipv4Addr, u16)) {
    let mut flows: HashMap<_, FlowTuple, Nat> = HashMap::try_from(
        harness
            .map_mut("BENCH_REF_FLOWS")
            .expect("reference flows map"),
    )
    .expect("reference flows");
    let tuple = FlowTuple {
        src: raw(client.0),
        dst: raw(VIP),
        src_port: client.1.to_be(),
        dst_port: 80u16.to_be(),
        proto: u32::from(TCP),
    };
    let nat = Nat {
        addr: raw(BACKEND_1),
        port: 80u16.to_be(),
        dst_mac: backend_mac(11),
        src_mac: BACKEND_SIDE_MAC,
        _pad: [0; 2],
    };
    flows.insert(tuple, nat, 0).expect("reference flow");
    let mut services: HashMap<_, Destination, u32> = HashMap::try_from(
        harness
            .map_mut("BENCH_REF_SERVICES")
            .expect("reference services map"),
    )
    .expect("reference services");
    let service = Destination {
        addr: raw(VIP),
        port: 80u16.to_be(),
        proto: u16::from(TCP),
    };
    services.insert(service, 1, 0).expect("reference service");
}
