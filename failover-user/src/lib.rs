//! The `failover` agent and CLI as a library: the data-path loader and its
//! typed map API. The binary (`main.rs`) only dispatches to it.

pub mod agent;
pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod decide;
pub mod events;
pub mod flow_sync;
#[cfg(any(test, feature = "lab"))]
pub mod lab;
pub mod model;
pub mod outputs;
pub mod probe;
pub mod routing;
pub mod util;

pub use dataplane::error::{DataplaneError, SpecError};
pub use dataplane::{AttachMode, Dataplane};
pub use model::{BackendSpec, BackendState, Proto, ServiceSpec};

/// The compiled XDP object, built by `build.rs` and embedded in the binary.
pub fn ebpf_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/failover"))
}

/// Name of the forwarding program in the object.
pub const PROGRAM_NAME: &str = "failover";
/// Name of the pass-everything program (veth peers, benchmark floor).
pub const PASS_PROGRAM_NAME: &str = "failover_pass";
/// Name of the program the forwarding program hands frames that are
/// neither TCP nor UDP to (ICMP errors), by tail call.
pub const NOT_TCP_UDP_PROGRAM_NAME: &str = "failover_not_tcp_udp";
/// Name of the program the forwarding program hands IPv6 frames to, by
/// tail call.
pub const IPV6_PROGRAM_NAME: &str = "failover_ipv6";
/// Name of the program the IPv6 program hands ICMPv6 (other than
/// neighbour discovery) to, by tail call.
pub const IPV6_NOT_TCP_UDP_PROGRAM_NAME: &str = "failover_ipv6_not_tcp_udp";
/// The program SYNs redispatch acts on go to, by tail call (IPv4, IPv6).
pub const REDISPATCH_PROGRAM_NAME: &str = "failover_redispatch";
pub const IPV6_REDISPATCH_PROGRAM_NAME: &str = "failover_ipv6_redispatch";
/// The tail-called programs and their `FO_PROGRAMS` slots.
pub const TAIL_CALLED: [(&str, u32); 5] = [
    (
        NOT_TCP_UDP_PROGRAM_NAME,
        failover_common::programs::NOT_TCP_UDP,
    ),
    (IPV6_PROGRAM_NAME, failover_common::programs::IPV6),
    (
        IPV6_NOT_TCP_UDP_PROGRAM_NAME,
        failover_common::programs::IPV6_NOT_TCP_UDP,
    ),
    (
        REDISPATCH_PROGRAM_NAME,
        failover_common::programs::REDISPATCH,
    ),
    (
        IPV6_REDISPATCH_PROGRAM_NAME,
        failover_common::programs::IPV6_REDISPATCH,
    ),
];
/// Where the agent pins its maps unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/failover";
