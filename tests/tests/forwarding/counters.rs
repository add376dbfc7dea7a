//! The data path's counters and flow entries agree with the traffic.

use std::collections::BTreeMap;

use failover_common::{
    Counter, PROTO_TCP, PROTO_UDP, ReverseKey, TrafficStats, ipv4_addr, stats::reason,
};

use crate::{
    checks::{assert_spread, flow_key, settled, tally},
    lab::{
        BACKEND_TCP_PORT, BACKEND_UDP_PORT, BACKENDS, CLIENT, Lab, TCP_PORT, UDP_PORT, VIP,
        backend_host,
    },
};

#[test]
fn counters_and_conntrack_agree_with_the_traffic() {
    let lab = Lab::new();
    let tcp_answers = lab.short_requests(40);
    let udp_answers = lab.udp_queries(40);
    let tcp_counts = tally(tcp_answers.iter().map(|(_, name)| name));
    let udp_counts = tally(udp_answers.iter().map(|(_, name)| name));
    assert_spread("tcp", &tcp_counts, 40, 0.1);
    assert_spread("udp", &udp_counts, 40, 0.1);

    let ids: Vec<u32> = lab
        .tcp
        .backends
        .keys()
        .chain(lab.udp.backends.keys())
        .copied()
        .collect();
    let (per_backend, tcp_service, udp_service, verdicts, reasons) = settled(|| {
        (
            ids.iter().map(|id| lab.traffic(*id)).collect::<Vec<_>>(),
            lab.dp.counters().service(lab.tcp.id).unwrap(),
            lab.dp.counters().service(lab.udp.id).unwrap(),
            lab.verdicts(),
            lab.reasons(),
        )
    });
    let traffic: BTreeMap<u32, TrafficStats> = ids.iter().copied().zip(per_backend).collect();

    // Per backend: both directions counted, consistent with what servers saw.
    for host in &BACKENDS {
        let conns = tcp_counts[host.name] as u64;
        let t = traffic[&Lab::backend_id(&lab.tcp, host.name)];
        eprintln!("tcp {}: {conns} connections, {t:?}", host.name);
        // At least SYN, request, FIN towards; SYN-ACK and answer back.
        assert!(
            t.to_backend.packets >= 3 * conns,
            "tcp {}: {t:?} for {conns} connections",
            host.name
        );
        assert!(
            t.from_backend.packets >= 2 * conns,
            "tcp {}: {t:?} for {conns} connections",
            host.name
        );
        let queries = udp_counts[host.name] as u64;
        let u = traffic[&Lab::backend_id(&lab.udp, host.name)];
        eprintln!("udp {}: {queries} queries, {u:?}", host.name);
        assert_eq!(u.to_backend.packets, queries, "udp {}: {u:?}", host.name);
        assert_eq!(u.from_backend.packets, queries, "udp {}: {u:?}", host.name);
    }
    // Per service: the sum of its backends.
    for (service, stats) in [(&lab.tcp, tcp_service), (&lab.udp, udp_service)] {
        let sum = |f: fn(&TrafficStats) -> Counter| {
            service
                .backends
                .keys()
                .map(|id| f(&traffic[id]))
                .fold(Counter::default(), |a, c| Counter {
                    packets: a.packets + c.packets,
                    bytes: a.bytes + c.bytes,
                })
        };
        assert_eq!(
            stats.to_backend,
            sum(|t| t.to_backend),
            "service {}",
            service.spec
        );
        assert_eq!(
            stats.from_backend,
            sum(|t| t.from_backend),
            "service {}",
            service.spec
        );
    }

    // Every packet has exactly one outcome; nothing was dropped or aborted.
    let outcomes: u64 = reasons[..reason::FIRST_EVENT as usize]
        .iter()
        .map(|c| c.packets)
        .sum();
    let verdict_total: u64 = verdicts.iter().map(|c| c.packets).sum();
    assert_eq!(
        outcomes,
        verdict_total,
        "outcomes vs verdicts\n{}",
        lab.diag()
    );
    assert_eq!(verdicts[0].packets, 0, "aborted\n{}", lab.diag());
    for index in [
        reason::DROP_NO_BACKEND,
        reason::DROP_NO_ROUTE,
        reason::DROP_FRAG_NEEDED,
        reason::DROP_FIB_ERROR,
        reason::EVENT_REPICK,
        reason::EVENT_CONNTRACK_INSERT_FAILED,
    ] {
        assert_eq!(
            reasons[index as usize].packets,
            0,
            "{}\n{}",
            reason::NAMES[index as usize],
            lab.diag()
        );
    }
    // Packets without an entry (a TCP flow's SYN and first ACK, a UDP
    // flow's first packet) are forwarded directly, or (next hop not yet
    // resolved on the edge host) rewritten and handed to the stack; each
    // flow is recorded once, by its first ACK or first datagram.
    let new_flows = reasons[reason::FWD_NEW_FLOW as usize].packets;
    let via_stack = reasons[reason::PASS_NO_NEIGHBOUR as usize].packets;
    assert!(
        new_flows <= 2 * 40 + 40 && new_flows + via_stack >= 2 * 40 + 40,
        "40 tcp flows (syn, first ack) and 40 udp flows\n{}",
        lab.diag()
    );
    assert_eq!(
        reasons[reason::EVENT_FLOW_RECORDED as usize].packets,
        80,
        "one record per flow\n{}",
        lab.diag()
    );
    assert!(
        reasons[reason::FWD_ESTABLISHED as usize].packets > 0,
        "{}",
        lab.diag()
    );
    assert!(
        reasons[reason::FWD_REPLY as usize].packets > 0,
        "{}",
        lab.diag()
    );
    // Forwarded natively between interfaces, not only through the stack.
    assert!(verdicts[4].packets > 0, "no redirects\n{}", lab.diag());

    // One entry per flow, in the client's direction, naming the backend
    // that answered; each backend endpoint names the VIP its replies
    // come from.
    let flows_table = lab.dp.flows();
    assert_eq!(flows_table.entries().len(), 80, "one entry per flow");
    let flows = tcp_answers
        .iter()
        .map(|a| (a, &lab.tcp, TCP_PORT, BACKEND_TCP_PORT, PROTO_TCP))
        .chain(
            udp_answers
                .iter()
                .map(|a| (a, &lab.udp, UDP_PORT, BACKEND_UDP_PORT, PROTO_UDP)),
        );
    for ((port, name), service, vip_port, backend_port, proto) in flows {
        let backend = backend_host(name);
        let forward = flow_key((CLIENT, *port), (VIP, vip_port), proto);
        let entry = flows_table
            .get(&forward)
            .unwrap()
            .unwrap_or_else(|| panic!("no entry for {forward:?}"));
        assert_eq!(entry.service_id, service.id);
        assert_eq!(
            entry.backend_id,
            Lab::backend_id(service, name),
            "flow from port {port} answered by {name}"
        );
        let endpoint = ReverseKey::ipv4(
            ipv4_addr(backend.addr.octets()),
            backend_port.to_be(),
            proto,
        );
        let nat = lab
            .dp
            .reverse_map()
            .get(&endpoint)
            .unwrap_or_else(|| panic!("no reverse NAT for {endpoint:?}"));
        assert_eq!(nat.vip, ipv4_addr(VIP.octets()));
        assert_eq!(u16::from_be(nat.vip_port_be), vip_port);
        assert_eq!(nat.backend_id, Lab::backend_id(service, name));
        assert_ne!(nat.reply_ifindex, 0, "the backend's interface was learned");
    }
}
