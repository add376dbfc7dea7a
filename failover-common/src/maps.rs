//! Layouts of every BPF map key and value, and the map sizes.
//!
//! Rules for this file (a padding byte in a hash key makes lookups fail at
//! random): every type is `#[repr(C)]`, `Copy`, has explicit `_pad` fields and a
//! compile-time size assertion. Addresses are stored as four `u32` words holding
//! the bytes exactly as they appear on the wire ("network order"); an IPv4
//! address uses word 0 and leaves words 1..3 zero, so IPv6 fits without a new
//! layout.

use core::mem::size_of;

/// Name of each map, as pinned under the pin directory.
pub mod names {
    pub const SERVICES: &str = "FO_SERVICES";
    pub const BACKENDS: &str = "FO_BACKENDS";
    /// One entry per flow, keyed in the client's direction.
    pub const FLOWS: &str = "FO_FLOWS";
    /// Backend endpoint → its service's VIP and port (reverse NAT).
    pub const REVERSE: &str = "FO_REVERSE";
    /// Which addresses are VIPs or backends (a filter before any hash lookup).
    pub const ADDRESSES: &str = "FO_ADDRESSES";
    /// Flow lifetimes and the flood guard's threshold.
    pub const SETTINGS: &str = "FO_SETTINGS";
    pub const VERDICTS: &str = "FO_VERDICTS";
    pub const REASONS: &str = "FO_REASONS";
    pub const BACKEND_STATS: &str = "FO_BACKEND_STATS";
    pub const SERVICE_STATS: &str = "FO_SERVICE_STATS";
    pub const MAGLEV: &str = "FO_MAGLEV";
    pub const ADMIN: &str = "FO_ADMIN";
    pub const EGRESS: &str = "FO_EGRESS";
    pub const REDIRECT_DROPS: &str = "FO_REDIRECT_DROPS";
    pub const PROGRAMS: &str = "FO_PROGRAMS";
    /// Backend id → what the data path saw of its handshakes (per CPU).
    pub const EVIDENCE: &str = "FO_EVIDENCE";
    /// Service id → the backends a refused SYN may go to besides the
    /// selection.
    pub const SPARES: &str = "FO_SPARES";
    /// Backend id → its flap-damping penalty, suppression and slow start
    /// (the agent's).
    pub const TIMERS: &str = "FO_TIMERS";
    pub const ALL: [&str; 18] = [
        SERVICES,
        BACKENDS,
        FLOWS,
        REVERSE,
        ADDRESSES,
        SETTINGS,
        VERDICTS,
        REASONS,
        BACKEND_STATS,
        SERVICE_STATS,
        MAGLEV,
        ADMIN,
        EGRESS,
        REDIRECT_DROPS,
        PROGRAMS,
        EVIDENCE,
        SPARES,
        TIMERS,
    ];
    /// Maps of earlier layouts the agent removes at start (their programs
    /// are replaced): the conntrack of two entries per flow.
    pub const RETIRED: [&str; 1] = ["FO_CONNTRACK"];
    /// Maps that hold nothing another build needs kept: counters (a build
    /// that counts other reasons) and the tail-call slots (refilled at
    /// every load). One of another layout is replaced, rather than refused.
    pub const REBUILT: [&str; 3] = [VERDICTS, REASONS, PROGRAMS];
}

/// Slots of `FO_PROGRAMS`: programs the data path hands a frame to.
pub mod programs {
    /// IPv4 that is neither TCP nor UDP (ICMP errors about tracked flows).
    pub const NOT_TCP_UDP: u32 = 0;
    /// IPv6.
    pub const IPV6: u32 = 1;
    /// ICMPv6 other than neighbour discovery (errors about tracked flows).
    pub const IPV6_NOT_TCP_UDP: u32 = 2;
    /// An IPv4 SYN redispatch acts on (repeated unanswered, or rebuilt
    /// from its backend's RST).
    pub const REDISPATCH: u32 = 3;
    /// The same for IPv6.
    pub const IPV6_REDISPATCH: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// Most services one edge host can carry.
pub const MAX_SERVICES: u32 = 1024;
/// Backend slots shared by all services.
pub const MAX_BACKENDS: u32 = 4096;
/// Selection slots per service: the most usable backends one tier can spread
/// new flows over.
pub const MAX_SELECTION: usize = 64;
/// Address family, as stored in keys. Values are our own, not AF_* numbers.
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers we forward.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// An IP address as four words in network order (see the module doc).
pub type AddrBe = [u32; 4];

/// Builds an [`AddrBe`] from an IPv4 address given as its four octets.
pub const fn ipv4_addr(octets: [u8; 4]) -> AddrBe {
    [u32::from_ne_bytes(octets), 0, 0, 0]
}

/// Builds an [`AddrBe`] from an IPv6 address given as its sixteen octets.
pub const fn ipv6_addr(o: [u8; 16]) -> AddrBe {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// Key of `FO_SERVICES`: one service is (virtual IP, port, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServiceKey {
    pub addr: AddrBe,
    /// Network order.
    pub port_be: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(size_of::<ServiceKey>() == 20);

/// Value of `FO_SERVICES`, written by the agent. The whole value is replaced in
/// one map update, which the kernel publishes atomically (RCU), so a packet
/// never sees a half-written selection or a half-built lookup table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// Index into `FO_SERVICE_STATS`; also stored in backends and flows.
    pub id: u32,
    /// `SERVICE_F_*` bits.
    pub flags: u32,
    /// How many entries of `selection` are in use.
    pub selection_len: u32,
    /// Priority tier the selection was built from (0 is the most preferred).
    pub active_tier: u32,
    /// Slots of the Maglev table new flows are looked up in (a prime); 0: no
    /// table, new flows are hashed over `selection` directly.
    pub table_size: u32,
    /// Which of the service's two tables in `FO_MAGLEV` is current: the agent
    /// fills the other one, then flips this in one update of the value.
    pub table_generation: u32,
    /// Backend ids of the active tier's usable backends: what the table is
    /// built from, and the fallback when a table slot names a backend that
    /// is no longer usable.
    pub selection: [u32; MAX_SELECTION],
}
const _: () = assert!(size_of::<Service>() == 24 + 4 * MAX_SELECTION);

/// `Service::flags`: answer packets of tracked TCP flows whose backend is
/// gone with a TCP RST (dead-flow policy `reset`) instead of re-picking them.
pub const SERVICE_F_RESET_DEAD_FLOWS: u32 = 1;
/// `Service::flags`: a SYN its backend refuses (RST) or leaves unanswered
/// (the client repeats it) is sent to another backend (`FO_SPARES`).
pub const SERVICE_F_REDISPATCH: u32 = 2;

/// Most backends `FO_SPARES` names per service.
pub const MAX_SPARES: usize = 7;

/// Value of `FO_SPARES` (by service id): where a SYN goes when every
/// backend of the selection refused it — who would take new flows if the
/// selection's backends were all down (the next tier's, or N+1's spares).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Spares {
    /// How many entries of `ids` are in use.
    pub len: u32,
    pub ids: [u32; MAX_SPARES],
}
const _: () = assert!(size_of::<Spares>() == 32);

impl Service {
    pub const fn new(id: u32) -> Self {
        Self {
            id,
            flags: 0,
            selection_len: 0,
            active_tier: 0,
            table_size: 0,
            table_generation: 0,
            selection: [0; MAX_SELECTION],
        }
    }
}

/// Backend ids per `FO_MAGLEV` value.
pub const MAGLEV_CHUNK_SLOTS: usize = 256;
/// Most `FO_MAGLEV` values (allocated on use, not up front): 1 KiB each.
/// Enough for two generations of the default table in every service slot.
pub const MAGLEV_CHUNKS: u32 = 262_144;
/// Largest table a service may have.
pub const MAX_TABLE_SIZE: u32 = 1_000_003;

/// Key of `FO_MAGLEV`: one chunk of one generation of a service's table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MaglevKey {
    pub service_id: u32,
    pub generation: u32,
    /// Slot / MAGLEV_CHUNK_SLOTS.
    pub chunk: u32,
}
const _: () = assert!(size_of::<MaglevKey>() == 12);

/// Value of `FO_MAGLEV`: backend ids of MAGLEV_CHUNK_SLOTS consecutive slots.
pub type MaglevChunk = [u32; MAGLEV_CHUNK_SLOTS];

/// Backend states, as stored in [`Backend::state`].
pub mod backend_state {
    /// Slot not in use.
    pub const EMPTY: u32 = 0;
    /// Takes new and established flows.
    pub const UP: u32 = 1;
    /// Takes nothing: its established flows are re-picked.
    pub const DOWN: u32 = 2;
    /// Takes no new flows; established flows stay until they end.
    pub const DRAINING: u32 = 3;
}

/// Whether a backend in `state` may receive a brand-new flow.
pub const fn usable_for_new(state: u32) -> bool {
    state == backend_state::UP
}

/// Whether a flow already on a backend in `state` may stay there.
pub const fn usable_for_established(state: u32) -> bool {
    state == backend_state::UP || state == backend_state::DRAINING
}

/// Value of `FO_BACKENDS` (an array indexed by backend id), written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    pub addr: AddrBe,
    /// Network order; 0 keeps the service's port.
    pub port_be: u16,
    pub family: u8,
    /// Priority tier, 0 most preferred.
    pub tier: u8,
    /// One of [`backend_state`].
    pub state: u32,
    /// Service this backend belongs to (index of its statistics).
    pub service_id: u32,
    pub weight: u32,
    /// Bumped by the agent every time the slot gets a new owner, and kept
    /// when the slot is emptied: a flow recorded with another generation
    /// belongs to an earlier owner of the id and is never sent here.
    pub generation: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Backend>() == 40);

/// Key of `FO_CONNTRACK`: a flow as it appears on the wire in one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: AddrBe,
    pub dst: AddrBe,
    /// Network order.
    pub src_port_be: u16,
    /// Network order.
    pub dst_port_be: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

impl FlowKey {
    /// A flow of `family` (addresses as [`ipv4_addr`] or [`ipv6_addr`]
    /// make them, ports in network order).
    pub const fn new(
        family: u8,
        src: AddrBe,
        dst: AddrBe,
        src_port_be: u16,
        dst_port_be: u16,
        proto: u8,
    ) -> Self {
        Self {
            src,
            dst,
            src_port_be,
            dst_port_be,
            proto,
            family,
            _pad: [0; 2],
        }
    }

    /// An IPv4 flow.
    pub const fn ipv4(
        src: AddrBe,
        dst: AddrBe,
        src_port_be: u16,
        dst_port_be: u16,
        proto: u8,
    ) -> Self {
        Self::new(FAMILY_IPV4, src, dst, src_port_be, dst_port_be, proto)
    }

    /// The same flow seen from the other side.
    pub const fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            src_port_be: self.dst_port_be,
            dst_port_be: self.src_port_be,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }
}

/// Value of `FO_ADMIN` (an array indexed by backend id): the agent's own
/// state of a backend, kept with the maps so a restarted agent resumes
/// exactly where the last one stopped. The XDP program never reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AdminRecord {
    /// [`Backend::generation`] of the slot the record was written for: a
    /// record of an earlier owner of the id is ignored.
    pub generation: u32,
    /// One of [`admin_kind`].
    pub admin: u8,
    /// `ADMIN_F_*` bits.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// End of a drain (CLOCK_MONOTONIC ns; 0: none).
    pub drain_until_ns: u64,
    /// End of a timed failback hold (CLOCK_MONOTONIC ns).
    pub hold_until_ns: u64,
}
const _: () = assert!(size_of::<AdminRecord>() == 24);

/// Value of `FO_TIMERS` (an array indexed by backend id): a backend's
/// flap-damping penalty and suppression and its slow start, kept like
/// [`AdminRecord`] for the next agent. The XDP program never reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TimersRecord {
    /// [`Backend::generation`] of the slot the record was written for (0:
    /// no record).
    pub generation: u32,
    /// The flap-damping penalty (whole units) as of `penalty_at_ns`.
    pub penalty: u32,
    /// When the penalty was last set (CLOCK_MONOTONIC ns; 0: never).
    pub penalty_at_ns: u64,
    /// End of its suppression (CLOCK_MONOTONIC ns; 0: not suppressed).
    pub suppressed_until_ns: u64,
    /// Start of its slow start (CLOCK_MONOTONIC ns; 0: not ramping).
    pub slow_start_since_ns: u64,
}
const _: () = assert!(size_of::<TimersRecord>() == 32);

/// [`AdminRecord::admin`]: who overrides health.
pub mod admin_kind {
    /// Nothing: health and policy decide.
    pub const NORMAL: u8 = 0;
    /// An operator drain (deadline in `drain_until_ns`).
    pub const DRAINED: u8 = 1;
    pub const MAINTENANCE: u8 = 2;
}

/// [`AdminRecord::flags`]: the record was written by an agent.
pub const ADMIN_F_VALID: u8 = 1;
/// Passed its health checks last.
pub const ADMIN_F_HEALTHY: u8 = 2;
/// Eligible for new flows as far as health and failback holds go.
pub const ADMIN_F_SERVING: u8 = 4;
/// Held until an operator failback.
pub const ADMIN_F_HOLD_OPERATOR: u8 = 8;
/// Held until `hold_until_ns`.
pub const ADMIN_F_HOLD_TIMED: u8 = 16;
/// The target of its service's switchover.
pub const ADMIN_F_SWITCHOVER_TARGET: u8 = 32;

/// Slots of `FO_EGRESS` (indexed by ifindex modulo this).
pub const EGRESS_SLOTS: u32 = 1024;
/// Interfaces `FO_REDIRECT_DROPS` tracks.
pub const REDIRECT_DROP_ENTRIES: u32 = 1024;

/// Value of `FO_EGRESS`: how to send to an egress interface, written by the
/// agent. Valid for `ifindex` only (the slot is ifindex modulo the size).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Egress {
    pub ifindex: u32,
    /// `EGRESS_F_*` bits.
    pub flags: u32,
}
const _: () = assert!(size_of::<Egress>() == 8);

/// [`Egress::flags`]: the kernel drops frames redirected to this interface;
/// hand rewritten packets for it to the stack instead.
pub const EGRESS_F_VIA_STACK: u32 = 1;

/// Value of the (per-CPU, unpinned) `FO_LAST_REDIRECT`: the outcome the
/// program counted for the frame it last redirected on this CPU, so that a
/// redirect the kernel then refuses is moved to `drop_redirect_failed`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LastRedirect {
    pub reason: u32,
    pub _pad: u32,
    pub bytes: u64,
}
const _: () = assert!(size_of::<LastRedirect>() == 16);

/// Packets and bytes; the value of every per-CPU counter array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<Counter>() == 16);

/// Value of `FO_BACKEND_STATS` and `FO_SERVICE_STATS` (per-CPU arrays indexed by
/// id): traffic towards the backends and replies coming back.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrafficStats {
    pub to_backend: Counter,
    pub from_backend: Counter,
}
const _: () = assert!(size_of::<TrafficStats>() == 32);

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: all of these are repr(C), Copy, and have no implicit padding
    // (checked by the size assertions above).
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Spares {}
    unsafe impl aya::Pod for TimersRecord {}
    unsafe impl aya::Pod for MaglevKey {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for crate::flows::Flow {}
    unsafe impl aya::Pod for crate::flows::ReverseKey {}
    unsafe impl aya::Pod for crate::flows::ReverseNat {}
    unsafe impl aya::Pod for crate::flows::Settings {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for TrafficStats {}
    unsafe impl aya::Pod for AdminRecord {}
    unsafe impl aya::Pod for Egress {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_twice_is_identity() {
        let key = FlowKey {
            src: ipv4_addr([192, 0, 2, 1]),
            dst: ipv4_addr([203, 0, 113, 10]),
            src_port_be: 1234u16.to_be(),
            dst_port_be: 80u16.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_IPV4,
            _pad: [0; 2],
        };
        assert_eq!(key.reversed().reversed(), key);
        assert_eq!(key.reversed().src, key.dst);
        assert_eq!(key.reversed().src_port_be, key.dst_port_be);
    }

    #[test]
    fn ipv4_addr_keeps_wire_order() {
        let addr = ipv4_addr([192, 0, 2, 1]);
        assert_eq!(addr[0].to_ne_bytes(), [192, 0, 2, 1]);
        assert_eq!(&addr[1..], &[0, 0, 0]);
    }

    #[test]
    fn only_up_takes_new_flows() {
        use backend_state::*;
        assert!(usable_for_new(UP));
        for state in [EMPTY, DOWN, DRAINING] {
            assert!(!usable_for_new(state));
        }
        assert!(usable_for_established(DRAINING));
        assert!(!usable_for_established(DOWN));
        assert!(!usable_for_established(EMPTY));
    }
}
