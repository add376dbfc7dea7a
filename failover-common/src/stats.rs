//! Indices of the per-CPU counter arrays and their names.
//!
//! `FO_VERDICTS` is indexed by the XDP action itself (0 aborted .. 4 redirect).
//! `FO_REASONS` is indexed by [`reason`]: every packet increments exactly one
//! *outcome* (why it got its verdict), and may also increment *events*
//! (things that happened on the way, such as a re-pick). So the sum of all
//! outcomes always equals the sum of all verdicts.

/// XDP actions (the kernel's `enum xdp_action`), which index `FO_VERDICTS`:
/// one home for userspace and the tests.
pub mod action {
    pub const XDP_ABORTED: u32 = 0;
    pub const XDP_DROP: u32 = 1;
    pub const XDP_PASS: u32 = 2;
    pub const XDP_TX: u32 = 3;
    pub const XDP_REDIRECT: u32 = 4;
}

/// Number of XDP actions counted in `FO_VERDICTS`.
pub const VERDICT_COUNT: u32 = 5;
/// Names of `FO_VERDICTS` entries, by XDP action value.
pub const VERDICT_NAMES: [&str; VERDICT_COUNT as usize] =
    ["aborted", "drop", "pass", "tx", "redirect"];

pub mod reason {
    // Outcomes: forwarded.
    /// New flow to a service: backend picked, rewritten, forwarded.
    pub const FWD_NEW_FLOW: u32 = 0;
    /// Packet of a tracked flow, forwarded to its backend.
    pub const FWD_ESTABLISHED: u32 = 1;
    /// Reply from a backend, source rewritten back to the VIP, forwarded.
    pub const FWD_REPLY: u32 = 2;

    // Outcomes: passed to the kernel stack untouched.
    /// Neither IPv4 nor IPv6 (ARP, LLDP, ...).
    pub const PASS_NOT_IP: u32 = 3;
    /// IPv4 but neither TCP nor UDP (nor an ICMP error about a tracked flow).
    pub const PASS_NOT_TCP_UDP: u32 = 4;
    /// An IPv4 fragment (first or later): reassembly is the stack's job.
    pub const PASS_FRAGMENT: u32 = 5;
    /// TCP/UDP that is neither for a service nor a tracked reply.
    pub const PASS_NO_SERVICE: u32 = 6;
    /// TTL would expire here: the stack answers with ICMP time exceeded.
    pub const PASS_TTL_EXPIRED: u32 = 7;
    /// Route lookup says the destination is local or forwarding is disabled.
    pub const PASS_NOT_FORWARDED: u32 = 8;

    // Outcomes: malformed, passed untouched for the stack to judge.
    pub const PASS_TRUNCATED_ETH: u32 = 9;
    pub const PASS_TRUNCATED_VLAN: u32 = 10;
    pub const PASS_TRUNCATED_IPV4: u32 = 11;
    /// Version not 4, IHL < 5, or total length inconsistent with the frame.
    pub const PASS_BAD_IPV4_HEADER: u32 = 12;
    pub const PASS_TRUNCATED_L4: u32 = 13;

    // Outcomes: rewritten and handed to the stack.
    /// Next hop's MAC unknown: the stack resolves it and forwards the packet.
    pub const PASS_NO_NEIGHBOUR: u32 = 14;

    // Outcomes: dropped.
    /// Service has no usable backend in any tier.
    pub const DROP_NO_BACKEND: u32 = 15;
    /// No route to the backend or client (unreachable, blackhole, prohibit).
    pub const DROP_NO_ROUTE: u32 = 16;
    /// A packet too big for its next hop's MTU, sent with "don't
    /// fragment", that got no ICMP answer: this CPU sent its most this
    /// second, or the frame could not be turned into one.
    pub const DROP_FRAG_NEEDED: u32 = 17;
    /// Any other route lookup failure.
    pub const DROP_FIB_ERROR: u32 = 18;

    // Outcomes: answered by the program.
    /// A tracked TCP flow's backend is gone and the service's dead-flow
    /// policy is `reset`: the client got a TCP RST from the VIP (XDP_TX).
    pub const TX_RESET: u32 = 19;

    // Outcomes: rewritten and handed to the stack (continued).
    /// The egress interface drops frames redirected to it (the kernel said
    /// so; e.g. a veth whose peer has no NAPI): the rewritten packet goes
    /// through the stack instead, until the agent starts again.
    pub const PASS_VIA_STACK: u32 = 20;

    // Outcomes: dropped by the kernel after we redirected.
    /// The redirect failed (the egress cannot take XDP frames): the kernel
    /// dropped the frame. Moved here from the forwarding outcome the
    /// program had counted, by the redirect watch.
    pub const DROP_REDIRECT_FAILED: u32 = 21;
    /// A packet with a tracked reply's addresses arrived on another
    /// interface than the one the flow's backend is reached by: not
    /// rewritten to come from the VIP (it would be a spoofed or stray reply).
    pub const DROP_REPLY_WRONG_INTERFACE: u32 = 22;

    // Outcomes: rewritten and handed to the stack (continued).
    /// An ICMP error (destination unreachable, fragmentation needed, time
    /// exceeded) from a backend's side about a tracked flow, translated to
    /// come from the VIP about the client's packet to the VIP, and handed to
    /// the stack, which forwards it to the client (they are rare).
    pub const PASS_ICMP_TRANSLATED: u32 = 23;

    // Outcomes: answered by the program (continued).
    /// A packet too big for its next hop's MTU, sent with "don't
    /// fragment": the sender got an ICMP "fragmentation needed" with that
    /// MTU, from the address it sent to (XDP_TX), and resends smaller.
    pub const TX_FRAG_NEEDED: u32 = 24;

    // Outcomes: rewritten and handed to the stack (continued).
    /// A packet too big for its next hop's MTU that may be fragmented:
    /// rewritten and handed to the stack, which fragments and forwards it.
    pub const PASS_TOO_BIG: u32 = 25;

    // Outcomes: dropped (continued).
    /// An ICMP error about a tracked flow past its service's rate of
    /// translated errors (per CPU and second): not passed on.
    pub const DROP_ICMP_RATE: u32 = 26;

    // Outcomes: malformed or not ours, IPv6 (passed untouched).
    pub const PASS_TRUNCATED_IPV6: u32 = 27;
    /// Version not 6, or a payload length the headers do not fit in.
    pub const PASS_BAD_IPV6_HEADER: u32 = 28;
    /// An IPv6 extension header chain the parser does not finish: longer
    /// than it walks, or a header it does not know (ESP, mobility, ...).
    pub const PASS_IPV6_EXTENSIONS: u32 = 29;
    /// Neighbour discovery or router messages (ICMPv6 133-137): the
    /// stack's, always untouched.
    pub const PASS_NEIGHBOUR_DISCOVERY: u32 = 30;

    // Events (not outcomes).
    /// A tracked flow's backend was no longer usable; it was picked again.
    pub const EVENT_REPICK: u32 = 31;
    /// A TCP packet without SYN had no entry and could not start one (a FIN
    /// or RST, or the flood guard was on): a backend was picked for it from
    /// the table, which decides the same way while it does not change.
    pub const EVENT_MIDFLOW_PICK: u32 = 32;
    /// Conntrack insert failed; the packet was still forwarded.
    pub const EVENT_CONNTRACK_INSERT_FAILED: u32 = 33;
    /// A pick hit a selection slot whose backend was not usable (the agent was
    /// between two map updates) and probed the next slots.
    pub const EVENT_STALE_SELECTION: u32 = 34;
    /// A rewritten packet's L4 checksum was partial (the pseudo-header sum
    /// only, as a local socket sends it over veth with transmit checksum
    /// offload): the data path computed it in full, since a native redirect
    /// loses the state that would have completed it.
    pub const EVENT_PARTIAL_CHECKSUM: u32 = 35;
    /// A flow was recorded: a UDP packet, or a TCP ACK without SYN, FIN or
    /// RST (the client's first ACK completes its handshake: a SYN alone
    /// records nothing, so a SYN flood fills nothing).
    pub const EVENT_FLOW_RECORDED: u32 = 36;
    /// A packet met its flow's entry past its lifetime: treated as absent.
    pub const EVENT_FLOW_EXPIRED: u32 = 37;
    /// A TCP flow saw a FIN or RST and is closing (short lifetime).
    pub const EVENT_FLOW_CLOSING: u32 = 38;
    /// A flow was not recorded because this CPU had recorded its most new
    /// flows this second (the flood guard); the table decided its packet.
    pub const EVENT_FLOOD_GUARD_SKIP: u32 = 39;
    /// A one-second window in which the flood guard tripped on a CPU (time
    /// under the guard, in CPU-seconds).
    pub const EVENT_FLOOD_GUARD_SECOND: u32 = 40;

    /// A client's first ACK without an entry went to the backend its SYN
    /// was sent to (remembered in `FO_SYNS`), not to a new pick: a table
    /// change between them does not reset the connection.
    pub const EVENT_SYN_FOLLOWED: u32 = 41;
    /// A SYN its backend refused (a RST answering it, turned back into the
    /// client's SYN) or left unanswered (the client sent it again) was
    /// sent to another backend of the service (`redispatch`).
    pub const EVENT_SYN_REDISPATCHED: u32 = 42;

    pub const COUNT: u32 = 43;
    /// First index that is an event rather than an outcome.
    pub const FIRST_EVENT: u32 = EVENT_REPICK;

    /// Names for `inspect` and metrics, by index.
    pub const NAMES: [&str; COUNT as usize] = [
        "fwd_new_flow",
        "fwd_established",
        "fwd_reply",
        "pass_not_ip",
        "pass_not_tcp_udp",
        "pass_fragment",
        "pass_no_service",
        "pass_ttl_expired",
        "pass_not_forwarded",
        "pass_truncated_eth",
        "pass_truncated_vlan",
        "pass_truncated_ipv4",
        "pass_bad_ipv4_header",
        "pass_truncated_l4",
        "pass_no_neighbour",
        "drop_no_backend",
        "drop_no_route",
        "drop_frag_needed",
        "drop_fib_error",
        "tx_reset",
        "pass_via_stack",
        "drop_redirect_failed",
        "drop_reply_wrong_interface",
        "pass_icmp_translated",
        "tx_frag_needed",
        "pass_too_big",
        "drop_icmp_rate",
        "pass_truncated_ipv6",
        "pass_bad_ipv6_header",
        "pass_ipv6_extensions",
        "pass_neighbour_discovery",
        "event_repick",
        "event_midflow_pick",
        "event_conntrack_insert_failed",
        "event_stale_selection",
        "event_partial_checksum",
        "event_flow_recorded",
        "event_flow_expired",
        "event_flow_closing",
        "event_flood_guard_skip",
        "event_flood_guard_second",
        "event_syn_followed",
        "event_syn_redispatched",
    ];

    /// Index of a reason by name.
    pub fn by_name(name: &str) -> Option<u32> {
        let mut i = 0;
        while i < NAMES.len() {
            if str_eq(NAMES[i], name) {
                return Some(i as u32);
            }
            i += 1;
        }
        None
    }

    fn str_eq(a: &str, b: &str) -> bool {
        a.as_bytes() == b.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::reason::*;

    #[test]
    fn names_are_unique_and_resolve() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(by_name(name), Some(i as u32), "{name}");
        }
        assert_eq!(by_name("no_such_reason"), None);
    }

    #[test]
    fn names_follow_outcome_then_event_layout() {
        for (i, name) in NAMES.iter().enumerate() {
            let is_event = name.starts_with("event_");
            assert_eq!(is_event, i as u32 >= FIRST_EVENT, "{name}");
        }
    }
}
