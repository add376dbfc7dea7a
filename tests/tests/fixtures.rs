//! Data-path fixtures for IPv4 TCP and UDP: each row is a packet, the maps
//! it meets, the verdict, the exact output bytes and the counter deltas it
//! must produce (harness: `failover_tests::fixture`).

use std::net::Ipv4Addr;

use failover::{BackendSpec, BackendState, Proto, ServiceSpec};
use failover_common::stats::reason;
use failover_tests::{
    fixture::*,
    lab::*,
    packet::{self, Frame, L4, TCP_ACK, TCP_PSH, TCP_SYN},
};

const ETH: usize = packet::ETH_LEN;

fn table() -> Vec<Fixture> {
    use Expect::*;
    use Side::*;
    let mut rows = Vec::new();

    // TCP: new flow, established, reply.
    let to_b1 = |f: Frame| {
        f.with_dst(BACKEND_1, WEB)
            .routed(BACKEND_SIDE_MAC, backend_mac(11))
    };
    rows.push(
        fixture(
            "tcp syn to vip picks backend and redirects",
            syn(40001, WEB).build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(syn(40001, WEB)).build()),
        )
        .counts(&["fwd_new_flow"]),
    );
    let ack = from_client(Frame::tcp(client(40002), vip(WEB), TCP_ACK | TCP_PSH));
    rows.push(
        fixture(
            "established tcp follows its conntrack entry",
            ack.clone().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(ack).build()),
        )
        .after(syn(40002, WEB).build(), Clients)
        .counts(&["fwd_established"]),
    );
    let syn_ack = from_backend(
        Frame::tcp((BACKEND_1, WEB), client(40003), TCP_SYN | TCP_ACK),
        11,
    );
    let restored = syn_ack
        .clone()
        .with_src(VIP, WEB)
        .routed(CLIENT_SIDE_MAC, CLIENT_MAC);
    rows.push(
        fixture(
            "backend reply is rewritten back to the vip",
            syn_ack.build(),
            Backends,
            XDP_REDIRECT,
            Bytes(restored.build()),
        )
        .after(syn(40003, WEB).build(), Clients)
        .counts(&["fwd_reply"]),
    );
    let midflow = from_client(Frame::tcp(client(40004), vip(WEB), TCP_ACK));
    rows.push(
        fixture(
            "tcp without syn and without entry is picked and counted",
            midflow.clone().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(midflow).build()),
        )
        .counts(&["fwd_new_flow", "event_midflow_pick"]),
    );
    let unknown_reply = from_backend(Frame::tcp((BACKEND_1, WEB), client(40005), TCP_ACK), 11);
    rows.push(
        fixture(
            "reply without a flow is not ours",
            unknown_reply.build(),
            Backends,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_no_service"]),
    );
    // A reply's addresses are not enough: it must come from where the
    // backend is, or anyone on the clients' side could send as the VIP.
    let stray_reply = from_client(Frame::tcp(
        (BACKEND_1, WEB),
        client(40006),
        TCP_SYN | TCP_ACK,
    ));
    rows.push(
        fixture(
            "a reply arriving on the clients' side is not rewritten",
            stray_reply.build(),
            Clients,
            XDP_DROP,
            Unchanged,
        )
        .after(syn(40006, WEB).build(), Clients)
        .counts(&["drop_reply_wrong_interface"]),
    );
    // The expected interface is known even when the forward packet went
    // through the stack to resolve the backend's neighbour.
    let unresolved_reply = from_backend(
        Frame::tcp(
            (UNRESOLVED_BACKEND, UNRESOLVED),
            client(40007),
            TCP_SYN | TCP_ACK,
        ),
        99,
    );
    let unresolved_restored = unresolved_reply
        .clone()
        .with_src(VIP, UNRESOLVED)
        .routed(CLIENT_SIDE_MAC, CLIENT_MAC);
    rows.push(
        fixture(
            "reply of a flow whose first packet the stack forwarded",
            unresolved_reply.build(),
            Backends,
            XDP_REDIRECT,
            Bytes(unresolved_restored.build()),
        )
        .after(syn(40007, UNRESOLVED).build(), Clients)
        .counts(&["fwd_reply"]),
    );
    let unresolved_stray = from_client(Frame::tcp(
        (UNRESOLVED_BACKEND, UNRESOLVED),
        client(40008),
        TCP_SYN | TCP_ACK,
    ));
    rows.push(
        fixture(
            "a stray reply of a flow whose first packet the stack forwarded",
            unresolved_stray.build(),
            Clients,
            XDP_DROP,
            Unchanged,
        )
        .after(syn(40008, UNRESOLVED).build(), Clients)
        .counts(&["drop_reply_wrong_interface"]),
    );

    // UDP both ways, port-mapped backend.
    let query = from_client(Frame::udp(client(5001), vip(DNS)));
    let to_b2 = query
        .clone()
        .with_dst(BACKEND_2, 5353)
        .routed(BACKEND_SIDE_MAC, backend_mac(12));
    rows.push(
        fixture(
            "udp to a port-mapped backend rewrites address and port",
            query.clone().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b2.build()),
        )
        .counts(&["fwd_new_flow"]),
    );
    let answer = from_backend(Frame::udp((BACKEND_2, 5353), client(5001)), 12);
    let answer_out = answer
        .clone()
        .with_src(VIP, DNS)
        .routed(CLIENT_SIDE_MAC, CLIENT_MAC);
    rows.push(
        fixture(
            "udp reply from a port-mapped backend restores vip and port",
            answer.build(),
            Backends,
            XDP_REDIRECT,
            Bytes(answer_out.build()),
        )
        .counts(&["fwd_reply"]),
    );
    let mut no_csum = from_client(Frame::udp(client(5002), vip(DNS)));
    no_csum.l4 = L4::Udp {
        src_port: 5002,
        dst_port: DNS,
        checksum: false,
    };
    let no_csum_out = no_csum
        .clone()
        .with_dst(BACKEND_2, 5353)
        .routed(BACKEND_SIDE_MAC, backend_mac(12));
    rows.push(
        fixture(
            "udp zero checksum stays zero",
            no_csum.build(),
            Clients,
            XDP_REDIRECT,
            Bytes(no_csum_out.build()),
        )
        .counts(&["fwd_new_flow"]),
    );

    // Egress equals ingress: XDP_TX.
    let local = syn(40006, LOCAL);
    let local_out = local
        .clone()
        .with_dst(LOCAL_BACKEND, LOCAL)
        .routed(CLIENT_SIDE_MAC, LOCAL_BACKEND_MAC);
    rows.push(
        fixture(
            "backend on the ingress segment is sent with XDP_TX",
            local.build(),
            Clients,
            XDP_TX,
            Bytes(local_out.build()),
        )
        .counts(&["fwd_new_flow"]),
    );
    let mut local_tagged = syn(40035, LOCAL);
    local_tagged.vlan = Some(42);
    rows.push(
        fixture(
            "a tagged frame sent back out where it came in loses its tag too",
            local_tagged.build(),
            Clients,
            XDP_TX,
            Bytes(
                syn(40035, LOCAL)
                    .with_dst(LOCAL_BACKEND, LOCAL)
                    .routed(CLIENT_SIDE_MAC, LOCAL_BACKEND_MAC)
                    .build(),
            ),
        )
        .counts(&["fwd_new_flow"]),
    );

    // Framing variants. A tagged frame leaves untagged: the route names an
    // untagged device (one on a VLAN device goes through the stack).
    let mut tagged = syn(40007, WEB);
    tagged.vlan = Some(100);
    rows.push(
        fixture(
            "an 802.1Q-tagged frame is forwarded without its tag",
            tagged.build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(syn(40007, WEB)).build()),
        )
        .counts(&["fwd_new_flow"]),
    );
    let mut qinq = syn(40034, WEB);
    qinq.vlan = Some(300);
    qinq.vlan_proto = 0x88a8;
    rows.push(
        fixture(
            "an 802.1ad-tagged frame is forwarded without its tag",
            qinq.build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(syn(40034, WEB)).build()),
        )
        .counts(&["fwd_new_flow"]),
    );
    let mut options = syn(40008, WEB);
    options.options = vec![0x94, 0x04, 0x00, 0x00]; // router alert
    rows.push(
        fixture(
            "ipv4 options are skipped and kept",
            options.clone().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(options).build()),
        )
        .counts(&["fwd_new_flow"]),
    );
    let mut ttl2 = syn(40009, WEB);
    ttl2.ttl = 2;
    rows.push(
        fixture(
            "ttl 2 leaves with ttl 1",
            ttl2.clone().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(ttl2).build()),
        )
        .counts(&["fwd_new_flow"]),
    );
    let mut ttl1 = syn(40010, WEB);
    ttl1.ttl = 1;
    rows.push(
        fixture(
            "ttl 1 goes to the stack for icmp time exceeded",
            ttl1.build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_ttl_expired"]),
    );

    // Not ours.
    rows.push(
        fixture(
            "tcp to a non-vip address passes untouched",
            from_client(Frame::tcp(
                client(40011),
                (Ipv4Addr::new(203, 0, 113, 99), WEB),
                TCP_SYN,
            ))
            .build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_no_service"]),
    );
    rows.push(
        fixture(
            "vip on a port without a service passes",
            syn(40012, 9999).build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_no_service"]),
    );
    let icmp = from_client(Frame::new(CLIENT, VIP, L4::Other { proto: 1 }));
    rows.push(
        fixture(
            "icmp to the vip passes",
            icmp.build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_not_tcp_udp"]),
    );
    let mut arp = syn(40013, WEB).build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    rows.push(fixture("arp passes", arp, Clients, XDP_PASS, Unchanged).counts(&["pass_not_ipv4"]));
    let mut ipv6 = syn(40014, WEB).build();
    ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    rows.push(
        fixture("ipv6 passes (for now)", ipv6, Clients, XDP_PASS, Unchanged)
            .counts(&["pass_not_ipv4"]),
    );

    // Fragments.
    let mut first_fragment = syn(40015, WEB);
    first_fragment.frag_off = 0x2000; // MF
    rows.push(
        fixture(
            "first fragment passes to the stack",
            first_fragment.build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_fragment"]),
    );
    let mut later_fragment = syn(40016, WEB);
    later_fragment.frag_off = 0x0010; // offset 128 bytes
    rows.push(
        fixture(
            "non-first fragment passes to the stack",
            later_fragment.build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_fragment"]),
    );

    // Malformed headers.
    let mut bad_ihl = syn(40017, WEB).build();
    bad_ihl[ETH] = 0x44;
    rows.push(
        fixture(
            "ihl below 5 is malformed",
            bad_ihl,
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_bad_ipv4_header"]),
    );
    let mut bad_version = syn(40018, WEB).build();
    bad_version[ETH] = 0x65;
    rows.push(
        fixture(
            "version 6 in an ipv4 frame is malformed",
            bad_version,
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_bad_ipv4_header"]),
    );
    let mut short_total = syn(40019, WEB).build();
    short_total[ETH + 2..ETH + 4].copy_from_slice(&10u16.to_be_bytes());
    rows.push(
        fixture(
            "total length below ihl is malformed",
            short_total,
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_bad_ipv4_header"]),
    );
    let mut long_total = syn(40020, WEB).build();
    long_total[ETH + 2..ETH + 4].copy_from_slice(&1400u16.to_be_bytes());
    rows.push(
        fixture(
            "total length beyond the frame is truncated",
            long_total,
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_truncated_ipv4"]),
    );
    let mut padded = syn(40021, WEB);
    padded.payload.clear();
    let mut padded_bytes = padded.clone().build();
    padded_bytes.resize(60 + 4, 0); // Ethernet minimum plus padding
    let mut padded_out = to_b1(padded).build();
    padded_out.resize(60 + 4, 0);
    rows.push(
        fixture(
            "ethernet padding after the datagram is kept",
            padded_bytes,
            Clients,
            XDP_REDIRECT,
            Bytes(padded_out),
        )
        .counts(&["fwd_new_flow"]),
    );

    // Route lookup outcomes and backend availability.
    let unresolved = syn(40022, UNRESOLVED);
    rows.push(
        fixture(
            "unresolved neighbour: rewritten, ttl kept, stack resolves",
            unresolved.clone().build(),
            Clients,
            XDP_PASS,
            Bytes(unresolved.with_dst(UNRESOLVED_BACKEND, UNRESOLVED).build()),
        )
        .counts(&["pass_no_neighbour"]),
    );
    rows.push(
        fixture(
            "unreachable backend is dropped",
            syn(40023, UNREACHABLE).build(),
            Clients,
            XDP_DROP,
            Unchanged,
        )
        .counts(&["drop_no_route"]),
    );
    // Partial checksums (a local sender with transmit checksum offload):
    // completed, since a native redirect loses the state that would.
    rows.push(
        fixture(
            "a tcp syn with a partial checksum leaves with it completed",
            syn(40030, WEB).partial().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(syn(40030, WEB)).build()),
        )
        .counts(&["fwd_new_flow", "event_partial_checksum"]),
    );
    let big_partial = from_client(
        Frame::tcp(client(40031), vip(WEB), TCP_ACK | TCP_PSH).with_payload(&[0x5a; 1400]),
    );
    rows.push(
        fixture(
            "a 1400-byte segment with a partial checksum leaves with it completed",
            big_partial.clone().partial().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(to_b1(big_partial).build()),
        )
        .after(syn(40031, WEB).build(), Clients)
        .counts(&["fwd_established", "event_partial_checksum"]),
    );
    let dns_partial = from_client(Frame::udp(client(40032), vip(DNS)).with_payload(b"query"));
    rows.push(
        fixture(
            "a udp datagram with a partial checksum leaves with it completed",
            dns_partial.clone().partial().build(),
            Clients,
            XDP_REDIRECT,
            Bytes(
                dns_partial
                    .with_dst(BACKEND_2, 5353)
                    .routed(BACKEND_SIDE_MAC, backend_mac(12))
                    .build(),
            ),
        )
        .counts(&["fwd_new_flow", "event_partial_checksum"]),
    );
    let reply_partial = from_backend(
        Frame::tcp((BACKEND_1, WEB), client(40033), TCP_SYN | TCP_ACK),
        11,
    );
    rows.push(
        fixture(
            "a reply with a partial checksum leaves with it completed",
            reply_partial.clone().partial().build(),
            Backends,
            XDP_REDIRECT,
            Bytes(
                reply_partial
                    .with_src(VIP, WEB)
                    .routed(CLIENT_SIDE_MAC, CLIENT_MAC)
                    .build(),
            ),
        )
        .after(syn(40033, WEB).build(), Clients)
        .counts(&["fwd_reply", "event_partial_checksum"]),
    );

    let big = syn(40026, SMALL_MTU).with_payload(&[0x42; 700]);
    rows.push(
        fixture(
            "a packet over the egress route's MTU is dropped (fragmentation needed)",
            big.build(),
            Clients,
            XDP_DROP,
            Unchanged,
        )
        .counts(&["drop_frag_needed"]),
    );
    rows.push(
        fixture(
            "a small packet on that route is forwarded",
            syn(40027, SMALL_MTU).build(),
            Clients,
            XDP_REDIRECT,
            Bytes(
                syn(40027, SMALL_MTU)
                    .with_dst(SMALL_MTU_BACKEND, SMALL_MTU)
                    .routed(BACKEND_SIDE_MAC, backend_mac(11))
                    .build(),
            ),
        )
        .counts(&["fwd_new_flow"]),
    );
    rows.push(
        fixture(
            "a backend at the edge host's own address is not forwarded: passed untouched",
            syn(40028, EDGE_ITSELF).build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_not_forwarded"]),
    );
    rows.push(
        fixture(
            "a route the lookup cannot use (tunnel encapsulation) drops",
            syn(40029, ENCAP).build(),
            Clients,
            XDP_DROP,
            Unchanged,
        )
        .counts(&["drop_fib_error"]),
    );
    rows.push(
        fixture(
            "service without a usable backend drops",
            syn(40024, DEAD).build(),
            Clients,
            XDP_DROP,
            Unchanged,
        )
        .counts(&["drop_no_backend"]),
    );

    // Truncated at every header boundary (and inside each header).
    // BPF_PROG_TEST_RUN refuses frames under 14 bytes (ETH_HLEN), as NICs
    // never deliver them, so Ethernet truncation is not reachable here.
    let full = syn(40025, WEB).build();
    for cut in ETH..full.len() - 21 {
        let expected = match cut {
            14..34 => "pass_truncated_ipv4",
            _ => "pass_truncated_l4",
        };
        rows.push(
            fixture(
                &format!("tcp frame cut at byte {cut}"),
                full[..cut].to_vec(),
                Clients,
                XDP_PASS,
                Unchanged,
            )
            .counts(&[expected]),
        );
    }
    let mut tagged = syn(40026, WEB);
    tagged.vlan = Some(7);
    let tagged = tagged.build();
    for cut in 14..18 {
        rows.push(
            fixture(
                &format!("vlan frame cut at byte {cut}"),
                tagged[..cut].to_vec(),
                Clients,
                XDP_PASS,
                Unchanged,
            )
            .counts(&["pass_truncated_vlan"]),
        );
    }
    let udp = from_client(Frame::udp(client(5003), vip(DNS))).build();
    for cut in 34..42 {
        rows.push(
            fixture(
                &format!("udp frame cut at byte {cut}"),
                udp[..cut].to_vec(),
                Clients,
                XDP_PASS,
                Unchanged,
            )
            .counts(&["pass_truncated_l4"]),
        );
    }
    rows
}

#[test]
fn fixture_table() {
    let rows = table();
    assert!(rows.len() > 60, "the table lost rows: {}", rows.len());
    run_table(&rows);
}

/// Tracked flows reuse the next hop cached in their conntrack entry; it is
/// looked up again at most `LAST_SEEN_GRANULARITY_NS` later, so a neighbour
/// change reaches established flows within that bound.
#[test]
fn cached_next_hop_follows_a_neighbour_change_within_the_refresh_bound() {
    let mut lab = TestRunLab::new();
    lab.dataplane
        .add_service(
            ServiceSpec::new(VIP, WEB, Proto::Tcp),
            &[BackendSpec::new(BACKEND_1)],
        )
        .unwrap();
    let dst_mac = |frame: &[u8]| <[u8; 6]>::try_from(&frame[..6]).unwrap();
    let ack = from_client(Frame::tcp(client(41000), vip(WEB), TCP_ACK)).build();
    let first = lab.run(&syn(41000, WEB).build(), lab.client_ifindex);
    assert_eq!(
        (first.action, dst_mac(&first.output)),
        (XDP_REDIRECT, backend_mac(11))
    );

    let moved = [0x02, 0, 0, 0, 0x0b, 0x99];
    lab.ns.ip(&[
        "neigh",
        "replace",
        &BACKEND_1.to_string(),
        "lladdr",
        &mac_string(moved),
        "dev",
        BACKEND_SIDE,
        "nud",
        "permanent",
    ]);
    let cached = lab.run(&ack, lab.client_ifindex);
    assert_eq!(
        dst_mac(&cached.output),
        backend_mac(11),
        "within the bound the cached hop is used"
    );

    let bound = std::time::Duration::from_nanos(failover_common::LAST_SEEN_GRANULARITY_NS);
    std::thread::sleep(bound + std::time::Duration::from_millis(100));
    let refreshed = lab.run(&ack, lab.client_ifindex);
    assert_eq!(refreshed.action, XDP_REDIRECT);
    assert_eq!(
        dst_mac(&refreshed.output),
        moved,
        "after the bound the route lookup runs again"
    );
    assert!(packet::checksums_valid(&refreshed.output));
}

/// Dead-flow policy `reset`: a packet of a tracked TCP flow whose backend is
/// down is answered with a RST from the VIP (RFC 793 reset generation), the
/// flow's entry is removed, and nothing reaches a backend.
#[test]
fn dead_flow_policy_reset_answers_with_a_rst_from_the_vip() {
    let mut lab = TestRunLab::new();
    let entry = lab
        .dataplane
        .add_service(
            ServiceSpec::new(VIP, WEB, Proto::Tcp),
            &[BackendSpec::new(BACKEND_1), BackendSpec::new(BACKEND_2)],
        )
        .unwrap();
    lab.dataplane
        .set_settings(
            entry.id,
            failover::dataplane::ServiceSettings {
                flags: failover_common::SERVICE_F_RESET_DEAD_FLOWS,
                ..Default::default()
            },
        )
        .unwrap();

    // An established segment, and one without ACK (a reset answers it with
    // RST+ACK acknowledging it).
    for (port, flags) in [(43000u16, TCP_ACK | TCP_PSH), (43001, TCP_PSH)] {
        let first = lab.run(&syn(port, WEB).build(), lab.client_ifindex);
        let backend = packet::parse(&first.output).expect("forwarded").dst;
        let id = *entry
            .backends
            .iter()
            .find(|(_, s)| s.addr == backend)
            .unwrap()
            .0;
        lab.dataplane
            .set_backend_state(id, BackendState::Down)
            .unwrap();

        let mut packet = from_client(Frame::tcp(client(port), vip(WEB), flags));
        packet.ttl = 57;
        let (seq, ack) = match packet.l4 {
            L4::Tcp { seq, ack, .. } => (seq, ack),
            _ => unreachable!(),
        };
        let payload_len = if flags & TCP_SYN != 0 {
            0
        } else {
            packet.payload.len() as u32
        };
        if flags & TCP_SYN != 0 {
            packet.payload.clear();
        }
        let (rst_seq, rst_ack, rst_flags) = if flags & TCP_ACK != 0 {
            (ack, 0, packet::TCP_RST)
        } else {
            // RFC 793: SYN and FIN count as one octet each.
            let control = u32::from(flags & (TCP_SYN | packet::TCP_FIN) != 0);
            (
                0,
                seq.wrapping_add(payload_len + control),
                packet::TCP_RST | TCP_ACK,
            )
        };
        let mut expected = Frame::new(
            VIP,
            CLIENT,
            L4::Tcp {
                src_port: WEB,
                dst_port: port,
                flags: rst_flags,
                seq: rst_seq,
                ack: rst_ack,
            },
        )
        .macs(CLIENT_SIDE_MAC, CLIENT_MAC)
        .with_payload(&[]);
        expected.ttl = 64;
        expected.id = 0;
        expected.tcp_window = 0;

        let before = lab.reasons()[reason::TX_RESET as usize].packets;
        let result = lab.run(&packet.build(), lab.client_ifindex);
        assert_eq!(result.action, XDP_TX, "port {port}");
        assert_eq!(hex(&result.output), hex(&expected.build()), "port {port}");
        assert!(packet::checksums_valid(&result.output));
        assert_eq!(lab.reasons()[reason::TX_RESET as usize].packets, before + 1);
        lab.dataplane
            .set_backend_state(id, BackendState::Up)
            .unwrap();
    }

    // A new SYN that reuses the tuple of a dead flow is a new connection:
    // re-picked onto a live backend, not reset.
    let port = 43002;
    let first = lab.run(&syn(port, WEB).build(), lab.client_ifindex);
    let dead = packet::parse(&first.output).expect("forwarded").dst;
    let id = *entry
        .backends
        .iter()
        .find(|(_, s)| s.addr == dead)
        .unwrap()
        .0;
    lab.dataplane
        .set_backend_state(id, BackendState::Down)
        .unwrap();
    let resets = lab.reasons()[reason::TX_RESET as usize].packets;
    let again = lab.run(&syn(port, WEB).build(), lab.client_ifindex);
    assert_eq!(again.action, XDP_REDIRECT, "a fresh SYN is forwarded");
    let to = packet::parse(&again.output).expect("forwarded").dst;
    assert_ne!(to, dead, "re-picked onto a live backend");
    assert_eq!(lab.reasons()[reason::TX_RESET as usize].packets, resets);
}
