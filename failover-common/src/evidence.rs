//! In-band evidence of a backend's health: what the data path sees of the
//! handshakes it forwards, counted per backend for the agent to judge
//! (`FO_EVIDENCE`). Counting costs a per-CPU add on packets that are
//! already rare (SYNs, SYN-ACKs, resets, ICMP errors); no map insert.

use core::mem::size_of;

/// Value of `FO_EVIDENCE` (per CPU, indexed by backend id).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Evidence {
    /// SYNs of new connections sent to the backend.
    pub syns: u64,
    /// SYN-ACKs from the backend (a handshake it answered).
    pub syn_acks: u64,
    /// RSTs from the backend's side answering a SYN sent to it: the
    /// connection's tuple, the SYN remembered unrecorded, the RST's
    /// acknowledgement the SYN's sequence number plus one. A RST on an
    /// established flow (an application closing) never counts.
    pub syn_resets: u64,
    /// ICMP / ICMPv6 destination unreachable from the backend's side about
    /// a packet sent to the backend.
    pub unreachable: u64,
}
const _: () = assert!(size_of::<Evidence>() == 32);

impl Evidence {
    /// The sum of per-CPU values.
    pub fn sum(values: &[Evidence]) -> Self {
        values.iter().fold(Self::default(), |acc, e| Self {
            syns: acc.syns + e.syns,
            syn_acks: acc.syn_acks + e.syn_acks,
            syn_resets: acc.syn_resets + e.syn_resets,
            unreachable: acc.unreachable + e.unreachable,
        })
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, no implicit padding (size asserted).
unsafe impl aya::Pod for Evidence {}
