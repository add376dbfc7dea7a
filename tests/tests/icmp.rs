//! ICMP errors about tracked flows, in both directions, handed to the stack
//! to forward (exact output bytes, every checksum computed from scratch by
//! the test's builder): from the backend's side to the client, translated
//! to come from the VIP about the client's packet to the VIP; from the
//! path towards a client to the VIP about a reply, translated for the
//! flow's backend about the reply as the backend sent it. Anything else
//! passes as before. The same for ICMPv6 (`rows6`).

use std::net::Ipv4Addr;

use failover_tests::{
    fixture::*,
    lab::*,
    packet::{
        Frame, ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, ICMP_PORT_UNREACHABLE, ICMP_TIME_EXCEEDED,
        L4, TCP_ACK, TCP_PSH,
    },
};

/// A router between the edge host and the backends.
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// An embedded IPv4 header and the 8 bytes RFC 792 requires after it.
const MINIMAL: usize = 28;
const WHOLE: usize = usize::MAX;

/// A DNS query from the client's `port`.
fn dns_query(port: u16) -> Frame {
    from_client(Frame::udp(client(port), vip(DNS)))
}

/// A client's packet as the edge host forwarded it to a backend, as an ICMP
/// error about it embeds it (MACs aside), and as the client sent it, as the
/// translated error must embed it (TTL aside: an error embeds what the
/// backend saw, one hop later).
struct Forwarded {
    forwarded: Frame,
    as_sent: Frame,
    /// The last octet of the backend's MAC: errors about it come in there.
    link: u8,
}

impl Forwarded {
    fn new(packet: &Frame, to: (Ipv4Addr, u16), service: u16, link: u8) -> Self {
        let forwarded = packet.clone().with_dst(to.0, to.1).routed([0; 6], [0; 6]);
        let as_sent = forwarded.clone().with_dst(VIP, service);
        Self {
            forwarded,
            as_sent,
            link,
        }
    }

    /// `packet`, to `DNS`, forwarded to `BACKEND_2`:5353.
    fn dns(packet: &Frame) -> Self {
        Self::new(packet, (BACKEND_2, 5353), DNS, 12)
    }

    /// `packet`, to `WEB`, forwarded to `BACKEND_1`.
    fn web(packet: &Frame) -> Self {
        Self::new(packet, (BACKEND_1, WEB), WEB, 11)
    }

    /// The ICMP error `kind` (type, code, rest of header) that `from` sends
    /// the client about the forwarded packet, embedding `keep` bytes of it.
    fn error(&self, from: Ipv4Addr, kind: (u8, u8, u32), keep: usize) -> Frame {
        from_backend(
            Frame::icmp_error(from, CLIENT, kind, &self.forwarded, keep),
            self.link,
        )
    }

    /// A row: that error is translated to come from the VIP about the
    /// packet as the client sent it, and passed to the stack; `first`
    /// recorded the flow.
    fn translated(
        &self,
        name: &str,
        (from, kind, keep): (Ipv4Addr, (u8, u8, u32), usize),
        first: Frame,
    ) -> Fixture {
        let translated = from_backend(
            Frame::icmp_error(VIP, CLIENT, kind, &self.as_sent, keep),
            self.link,
        );
        fixture(
            name,
            self.error(from, kind, keep).build(),
            Side::Backends,
            XDP_PASS,
            Expect::Bytes(translated.build()),
        )
        .after(first.build(), Side::Clients)
        .counts(&["pass_icmp_translated"])
    }
}

/// A router on the clients' side.
const CLIENT_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

/// A row: the error `kind` that `from` sends the VIP about `reply` (as the
/// edge host sent it to the client) is translated for `backend`, about the
/// reply as the backend sent it, and passed to the stack; `first` recorded
/// the flow.
fn about_a_reply(
    name: &str,
    (from, kind, keep): (Ipv4Addr, (u8, u8, u32), usize),
    reply: &Frame,
    backend: (Ipv4Addr, u16),
    first: Frame,
) -> Fixture {
    let as_backend_sent = reply.clone().with_src(backend.0, backend.1);
    fixture(
        name,
        from_client(Frame::icmp_error(from, VIP, kind, reply, keep)).build(),
        Side::Clients,
        XDP_PASS,
        Expect::Bytes(
            from_client(Frame::icmp_error(
                from,
                backend.0,
                kind,
                &as_backend_sent,
                keep,
            ))
            .build(),
        ),
    )
    .after(first.build(), Side::Clients)
    .counts(&["pass_icmp_translated"])
}

fn rows() -> Vec<Fixture> {
    use Expect::*;
    use Side::*;
    let mut rows = Vec::new();
    let unreachable = (ICMP_DEST_UNREACHABLE, ICMP_PORT_UNREACHABLE, 0);

    let query = dns_query(5100);
    rows.push(Forwarded::dns(&query).translated(
        "udp port unreachable from a backend reaches the client from the vip",
        (BACKEND_2, unreachable, WHOLE),
        query,
    ));

    // A router on the way: time exceeded, only the 8 bytes RFC 792 asks
    // for (the TCP checksum is not embedded, so not updated).
    let syn_to_web = syn(40100, WEB);
    rows.push(Forwarded::web(&syn_to_web).translated(
        "time exceeded from a router toward the backend, 8 bytes embedded",
        (ROUTER, (ICMP_TIME_EXCEEDED, 0, 0), MINIMAL),
        syn_to_web,
    ));

    // Fragmentation needed with the whole TCP header embedded: its checksum
    // is updated too, and the MTU is passed on unchanged.
    let data = from_client(Frame::tcp(client(40101), vip(WEB), TCP_ACK | TCP_PSH));
    let frag_needed = (ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, 1400);
    rows.push(Forwarded::web(&data).translated(
        "fragmentation needed about a tracked tcp flow, whole header embedded",
        (ROUTER, frag_needed, WHOLE),
        syn(40101, WEB),
    ));

    // A UDP checksum of zero ("none") stays zero.
    let mut bare = dns_query(5101);
    bare.l4 = L4::Udp {
        src_port: 5101,
        dst_port: DNS,
        checksum: false,
    };
    rows.push(Forwarded::dns(&bare).translated(
        "port unreachable about a udp datagram without checksum",
        (BACKEND_2, unreachable, WHOLE),
        bare,
    ));

    // About a packet to no backend endpoint (a port the backend serves no
    // service on): the stack's, untouched.
    let untracked = dns_query(5102)
        .with_dst(BACKEND_2, 9999)
        .routed([0; 6], [0; 6]);
    rows.push(
        fixture(
            "an icmp error about a packet to no backend endpoint passes untouched",
            from_backend(
                Frame::icmp_error(BACKEND_2, CLIENT, unreachable, &untracked, WHOLE),
                12,
            )
            .build(),
            Backends,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_not_tcp_udp"]),
    );

    // About a tracked flow but sent to someone else than its client.
    let query = dns_query(5103);
    let flow = Forwarded::dns(&query);
    rows.push(
        fixture(
            "an icmp error addressed to another host than the flow's client passes",
            from_backend(
                Frame::icmp_error(
                    BACKEND_2,
                    Ipv4Addr::new(192, 0, 2, 77),
                    unreachable,
                    &flow.forwarded,
                    WHOLE,
                ),
                12,
            )
            .build(),
            Backends,
            XDP_PASS,
            Unchanged,
        )
        .after(query.build(), Clients)
        .counts(&["pass_not_tcp_udp"]),
    );

    // About a tracked flow, but from the clients' side: as for replies,
    // never sent out as the VIP.
    let query = dns_query(5104);
    let flow = Forwarded::dns(&query);
    rows.push(
        fixture(
            "an icmp error about a tracked flow from the clients' side is dropped",
            from_client(Frame::icmp_error(
                BACKEND_2,
                CLIENT,
                unreachable,
                &flow.forwarded,
                WHOLE,
            ))
            .build(),
            Clients,
            XDP_DROP,
            Unchanged,
        )
        .after(query.build(), Clients)
        .counts(&["drop_reply_wrong_interface"]),
    );

    // From the path towards the client, about a reply: to the backend.
    let frag_needed = (ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, 1400);
    let first_ack = from_client(Frame::tcp(client(40120), vip(WEB), TCP_ACK));
    let reply = Frame::tcp(vip(WEB), client(40120), TCP_ACK | TCP_PSH);
    rows.push(about_a_reply(
        "fragmentation needed from a client-side router about a reply reaches its backend",
        (CLIENT_ROUTER, frag_needed, WHOLE),
        &reply,
        (BACKEND_1, WEB),
        first_ack,
    ));
    let query = dns_query(5120);
    let answer = Frame::udp(vip(DNS), client(5120));
    rows.push(about_a_reply(
        "port unreachable from the client about a udp reply reaches its backend, port-mapped",
        (CLIENT, unreachable, MINIMAL),
        &answer,
        (BACKEND_2, 5353),
        query,
    ));
    // No tracked flow, or not addressed to the VIP: the stack's, untouched.
    let untracked = Frame::tcp(vip(WEB), client(40121), TCP_ACK);
    rows.push(
        fixture(
            "an icmp error about a reply of no tracked flow passes untouched",
            from_client(Frame::icmp_error(
                CLIENT_ROUTER,
                VIP,
                frag_needed,
                &untracked,
                WHOLE,
            ))
            .build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_not_tcp_udp"]),
    );
    let first_ack = from_client(Frame::tcp(client(40122), vip(WEB), TCP_ACK));
    let reply = Frame::tcp(vip(WEB), client(40122), TCP_ACK);
    rows.push(
        fixture(
            "an icmp error about a tracked reply addressed elsewhere than the vip passes",
            from_client(Frame::icmp_error(
                CLIENT_ROUTER,
                Ipv4Addr::new(203, 0, 113, 99),
                frag_needed,
                &reply,
                WHOLE,
            ))
            .build(),
            Clients,
            XDP_PASS,
            Unchanged,
        )
        .after(first_ack.build(), Clients)
        .counts(&["pass_not_tcp_udp"]),
    );

    // Errors the program does not translate, and malformed ones.
    let query = dns_query(5105);
    let flow = Forwarded::dns(&query);
    let redirect = (5, 1, u32::from(Ipv4Addr::new(198, 51, 100, 2)));
    rows.push(
        fixture(
            "an icmp redirect about a tracked flow passes",
            flow.error(BACKEND_2, redirect, WHOLE).build(),
            Backends,
            XDP_PASS,
            Unchanged,
        )
        .after(query.build(), Clients)
        .counts(&["pass_not_tcp_udp"]),
    );
    let full = flow.error(BACKEND_2, unreachable, WHOLE).build();
    // Ethernet 14 + IPv4 20 + ICMP 8 + embedded IPv4 20 + UDP 8.
    for cut in [14 + 20 + 4, 14 + 20 + 8 + 10, 14 + 20 + 8 + 20 + 4] {
        let mut short = full[..cut].to_vec();
        // A consistent total length: the datagram ends where the frame does.
        let tot_len = (cut - 14) as u16;
        short[16..18].copy_from_slice(&tot_len.to_be_bytes());
        let check = failover_common::csum::checksum_be(
            &{
                let mut header = short[14..34].to_vec();
                header[10..12].copy_from_slice(&[0, 0]);
                header
            },
            0,
        );
        short[24..26].copy_from_slice(&check.to_be_bytes());
        rows.push(
            fixture(
                &format!("an icmp error cut at byte {cut} passes"),
                short,
                Backends,
                XDP_PASS,
                Unchanged,
            )
            .counts(&["pass_not_tcp_udp"]),
        );
    }
    let mut cut_frame = full.clone();
    cut_frame.truncate(full.len() - 1);
    rows.push(
        fixture(
            "an icmp error whose datagram is longer than the frame passes",
            cut_frame,
            Backends,
            XDP_PASS,
            Unchanged,
        )
        .counts(&["pass_not_tcp_udp"]),
    );
    rows
}

/// ICMPv6 errors about IPv6 flows, both ways: the ICMPv6 checksum also
/// covers the outer addresses (its pseudo-header), so the outer rewrite
/// moves it too.
fn rows6() -> Vec<Fixture> {
    use failover_tests::packet::{
        Frame6, TCP_ACK,
        v6::{
            ICMPV6_DEST_UNREACHABLE, ICMPV6_PACKET_TOO_BIG, ICMPV6_PORT_UNREACHABLE,
            ICMPV6_TIME_EXCEEDED,
        },
    };
    let mut rows = Vec::new();
    let forwarded6 = |packet: &Frame6, to: (std::net::Ipv6Addr, u16)| {
        let mut forwarded = packet.clone().with_dst(to.0, to.1);
        forwarded.hop_limit -= 1;
        forwarded
    };
    // UDP port unreachable from the port-mapped DNS backend.
    let query = from_client6(Frame6::udp((CLIENT6, 5600), (VIP6, DNS)));
    let sent = forwarded6(&query, (BACKEND6_2, 5353));
    let as_sent = sent.clone().with_dst(VIP6, DNS);
    let unreachable = (ICMPV6_DEST_UNREACHABLE, ICMPV6_PORT_UNREACHABLE, 0);
    rows.push(
        fixture(
            "icmpv6 port unreachable from a backend reaches the client from the vip",
            from_backend6(
                Frame6::icmp_error(BACKEND6_2, CLIENT6, unreachable, &sent, 1232),
                12,
            )
            .build(),
            Side::Backends,
            XDP_PASS,
            Expect::Bytes(
                from_backend6(
                    Frame6::icmp_error(VIP6, CLIENT6, unreachable, &as_sent, 1232),
                    12,
                )
                .build(),
            ),
        )
        .after(query.build(), Side::Clients)
        .counts(&["pass_icmp_translated"]),
    );
    // Packet Too Big from a router on the backends' side, about a whole
    // TCP segment (its checksum is embedded and follows too), and time
    // exceeded quoting only the header and 8 bytes.
    let router = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0xfe);
    let segment = from_client6(Frame6::tcp((CLIENT6, 41600), (VIP6, WEB), TCP_ACK));
    let sent = forwarded6(&segment, (BACKEND6_1, WEB));
    let as_sent = sent.clone().with_dst(VIP6, WEB);
    for (name, kind, keep) in [
        ("packet too big", (ICMPV6_PACKET_TOO_BIG, 0, 1280), 1232),
        ("time exceeded", (ICMPV6_TIME_EXCEEDED, 0, 0), 48),
    ] {
        rows.push(
            fixture(
                &format!("icmpv6 {name} about a client's segment reaches it from the vip"),
                from_backend6(Frame6::icmp_error(router, CLIENT6, kind, &sent, keep), 11).build(),
                Side::Backends,
                XDP_PASS,
                Expect::Bytes(
                    from_backend6(Frame6::icmp_error(VIP6, CLIENT6, kind, &as_sent, keep), 11)
                        .build(),
                ),
            )
            .after(segment.build(), Side::Clients)
            .counts(&["pass_icmp_translated"]),
        );
    }
    // Packet Too Big from the clients' side about a reply of a tracked
    // flow: for the backend, about the reply as the backend sent it.
    let first_ack = from_client6(Frame6::tcp((CLIENT6, 41601), (VIP6, WEB), TCP_ACK));
    let mut reply = Frame6::tcp((VIP6, WEB), (CLIENT6, 41601), TCP_ACK);
    reply.hop_limit = 63;
    let as_backend_sent = reply.clone().with_src(BACKEND6_1, WEB);
    let client_router = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 0xfe);
    let too_big = (ICMPV6_PACKET_TOO_BIG, 0, 1280);
    rows.push(
        fixture(
            "icmpv6 packet too big about a reply reaches its backend",
            from_client6(Frame6::icmp_error(
                client_router,
                VIP6,
                too_big,
                &reply,
                1232,
            ))
            .build(),
            Side::Clients,
            XDP_PASS,
            Expect::Bytes(
                from_client6(Frame6::icmp_error(
                    client_router,
                    BACKEND6_1,
                    too_big,
                    &as_backend_sent,
                    1232,
                ))
                .build(),
            ),
        )
        .after(first_ack.build(), Side::Clients)
        .counts(&["pass_icmp_translated"]),
    );
    // About nothing of ours: passes untouched.
    let stray = from_client6(Frame6::tcp((CLIENT6, 41602), (BACKEND6_3, WEB), TCP_ACK));
    rows.push(
        fixture(
            "icmpv6 error about another host's packet passes",
            from_backend6(
                Frame6::icmp_error(router, CLIENT6, unreachable, &stray, 1232),
                13,
            )
            .build(),
            Side::Backends,
            XDP_PASS,
            Expect::Unchanged,
        )
        .counts(&["pass_not_tcp_udp"]),
    );
    rows
}

#[test]
fn icmpv6_error_fixtures() {
    run_table(&rows6());
}

#[test]
fn icmp_error_fixtures() {
    let rows = rows();
    assert!(rows.len() >= 16, "the table lost rows: {}", rows.len());
    run_table(&rows);
}

/// Translated errors are limited per service, CPU and second: past 1,000
/// they are dropped and counted. Run on one CPU, well within a second.
#[test]
fn translated_errors_are_rate_limited_per_service() {
    failover_tests::pin_to_one_cpu();
    let mut lab = TestRunLab::new();
    setup(&mut lab);
    let query = dns_query(5200);
    let error = Forwarded::dns(&query)
        .error(
            BACKEND_2,
            (ICMP_DEST_UNREACHABLE, ICMP_PORT_UNREACHABLE, 0),
            WHOLE,
        )
        .build();
    let count = |lab: &TestRunLab, name: &str| {
        let index = failover_common::stats::reason::by_name(name).expect(name);
        lab.reasons()[index as usize].packets
    };
    let program = lab.dataplane.program().expect("program");
    let started = std::time::Instant::now();
    lab.ns.run(|| {
        for _ in 0..1_100 {
            run_xdp(program, &error, lab.backend_ifindex);
        }
    });
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "too slow to stay within one window: {:?}",
        started.elapsed()
    );
    assert_eq!(count(&lab, "pass_icmp_translated"), 1_000);
    assert_eq!(count(&lab, "drop_icmp_rate"), 100);
}
