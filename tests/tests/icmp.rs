//! ICMP errors about tracked flows, from the backend's side to the client:
//! translated to come from the VIP about the client's packet to the VIP and
//! handed to the stack to forward (exact output bytes, every checksum
//! computed from scratch by the test's builder); anything else passes as
//! before.

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

fn rows() -> Vec<Fixture> {
    use Expect::*;
    use Side::*;
    let mut rows = Vec::new();

    // The client's packet as it left the edge host for the backend, and the
    // same packet as the client sent it (TTL aside: the error embeds what
    // the backend saw, one hop later).
    let query = from_client(Frame::udp(client(5100), vip(DNS)));
    let forwarded = query
        .clone()
        .with_dst(BACKEND_2, 5353)
        .routed([0; 6], [0; 6]);
    let as_sent = forwarded.clone().with_dst(VIP, DNS);
    let unreachable = (ICMP_DEST_UNREACHABLE, ICMP_PORT_UNREACHABLE, 0);
    let error = from_backend(
        Frame::icmp_error(BACKEND_2, CLIENT, unreachable, &forwarded, WHOLE),
        12,
    );
    let translated = from_backend(
        Frame::icmp_error(VIP, CLIENT, unreachable, &as_sent, WHOLE),
        12,
    );
    rows.push(
        fixture(
            "udp port unreachable from a backend reaches the client from the vip",
            error.build(),
            Backends,
            XDP_PASS,
            Bytes(translated.build()),
        )
        .after(query.build(), Clients)
        .counts(&["pass_icmp_translated"]),
    );

    // A router on the way: time exceeded, only the 8 bytes RFC 792 asks
    // for (the TCP checksum is not embedded, so not updated).
    let syn_to_web = syn(40100, WEB);
    let forwarded = syn_to_web
        .clone()
        .with_dst(BACKEND_1, WEB)
        .routed([0; 6], [0; 6]);
    let as_sent = forwarded.clone().with_dst(VIP, WEB);
    let exceeded = (ICMP_TIME_EXCEEDED, 0, 0);
    let error = from_backend(
        Frame::icmp_error(ROUTER, CLIENT, exceeded, &forwarded, MINIMAL),
        11,
    );
    let translated = from_backend(
        Frame::icmp_error(VIP, CLIENT, exceeded, &as_sent, MINIMAL),
        11,
    );
    rows.push(
        fixture(
            "time exceeded from a router toward the backend, 8 bytes embedded",
            error.build(),
            Backends,
            XDP_PASS,
            Bytes(translated.build()),
        )
        .after(syn_to_web.build(), Clients)
        .counts(&["pass_icmp_translated"]),
    );

    // Fragmentation needed with the whole TCP header embedded: its checksum
    // is updated too, and the MTU is passed on unchanged.
    let data = from_client(Frame::tcp(client(40101), vip(WEB), TCP_ACK | TCP_PSH));
    let forwarded = data.clone().with_dst(BACKEND_1, WEB).routed([0; 6], [0; 6]);
    let as_sent = forwarded.clone().with_dst(VIP, WEB);
    let frag_needed = (ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, 1400);
    let error = from_backend(
        Frame::icmp_error(ROUTER, CLIENT, frag_needed, &forwarded, WHOLE),
        11,
    );
    let translated = from_backend(
        Frame::icmp_error(VIP, CLIENT, frag_needed, &as_sent, WHOLE),
        11,
    );
    rows.push(
        fixture(
            "fragmentation needed about a tracked tcp flow, whole header embedded",
            error.build(),
            Backends,
            XDP_PASS,
            Bytes(translated.build()),
        )
        .after(syn(40101, WEB).build(), Clients)
        .counts(&["pass_icmp_translated"]),
    );

    // A UDP checksum of zero ("none") stays zero.
    let mut bare = from_client(Frame::udp(client(5101), vip(DNS)));
    bare.l4 = L4::Udp {
        src_port: 5101,
        dst_port: DNS,
        checksum: false,
    };
    let forwarded = bare
        .clone()
        .with_dst(BACKEND_2, 5353)
        .routed([0; 6], [0; 6]);
    let as_sent = forwarded.clone().with_dst(VIP, DNS);
    let error = from_backend(
        Frame::icmp_error(BACKEND_2, CLIENT, unreachable, &forwarded, WHOLE),
        12,
    );
    let translated = from_backend(
        Frame::icmp_error(VIP, CLIENT, unreachable, &as_sent, WHOLE),
        12,
    );
    rows.push(
        fixture(
            "port unreachable about a udp datagram without checksum",
            error.build(),
            Backends,
            XDP_PASS,
            Bytes(translated.build()),
        )
        .after(bare.build(), Clients)
        .counts(&["pass_icmp_translated"]),
    );

    // About a packet to no backend endpoint (a port the backend serves no
    // service on): the stack's, untouched.
    let untracked = from_client(Frame::udp(client(5102), vip(DNS)))
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
    let query = from_client(Frame::udp(client(5103), vip(DNS)));
    let forwarded = query
        .clone()
        .with_dst(BACKEND_2, 5353)
        .routed([0; 6], [0; 6]);
    rows.push(
        fixture(
            "an icmp error addressed to another host than the flow's client passes",
            from_backend(
                Frame::icmp_error(
                    BACKEND_2,
                    Ipv4Addr::new(192, 0, 2, 77),
                    unreachable,
                    &forwarded,
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
    let query = from_client(Frame::udp(client(5104), vip(DNS)));
    let forwarded = query
        .clone()
        .with_dst(BACKEND_2, 5353)
        .routed([0; 6], [0; 6]);
    rows.push(
        fixture(
            "an icmp error about a tracked flow from the clients' side is dropped",
            from_client(Frame::icmp_error(
                BACKEND_2,
                CLIENT,
                unreachable,
                &forwarded,
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

    // Errors the program does not translate, and malformed ones.
    let query = from_client(Frame::udp(client(5105), vip(DNS)));
    let forwarded = query
        .clone()
        .with_dst(BACKEND_2, 5353)
        .routed([0; 6], [0; 6]);
    let redirect = (5, 1, u32::from(Ipv4Addr::new(198, 51, 100, 2)));
    rows.push(
        fixture(
            "an icmp redirect about a tracked flow passes",
            from_backend(
                Frame::icmp_error(BACKEND_2, CLIENT, redirect, &forwarded, WHOLE),
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
    let full = from_backend(
        Frame::icmp_error(BACKEND_2, CLIENT, unreachable, &forwarded, WHOLE),
        12,
    )
    .build();
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

#[test]
fn icmp_error_fixtures() {
    let rows = rows();
    assert!(rows.len() >= 12, "the table lost rows: {}", rows.len());
    run_table(&rows);
}
