//! New flows spread over both backends, in native and skb mode; every
//! answer comes from the VIP.

use std::collections::BTreeSet;

use failover::AttachMode;

use crate::{
    checks::{assert_spread, tally},
    lab::{BACKENDS, Lab},
};

#[test]
fn many_flows_spread_over_both_backends_and_replies_come_from_the_vip() {
    spread_and_vip_replies(&Lab::new());
}

/// The same in skb (generic) mode on plain veth links.
#[test]
fn skb_mode_on_plain_veth_spreads_flows_and_replies_from_the_vip() {
    spread_and_vip_replies(&Lab::with_mode(AttachMode::Skb));
}

fn spread_and_vip_replies(lab: &Lab) {
    // TCP: 200 short connections, each from a new source port.
    let answers = lab.short_requests(200);
    let ports: BTreeSet<u16> = answers.iter().map(|(port, _)| *port).collect();
    assert_eq!(ports.len(), 200, "source ports were reused");
    let tcp_counts = tally(answers.iter().map(|(_, name)| name));
    assert_spread("tcp", &tcp_counts, 200, 0.25);
    for host in &BACKENDS {
        let accepted = lab
            .server(host.name)
            .stats()
            .tcp_connections
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            accepted, tcp_counts[host.name],
            "{} accepted {accepted} connections",
            host.name
        );
    }

    // UDP: 100 datagrams from distinct sockets; every answer from VIP:53.
    let answers = lab.udp_queries(100);
    let ports: BTreeSet<u16> = answers.iter().map(|(port, _)| *port).collect();
    assert_eq!(ports.len(), 100, "udp source ports were reused");
    let udp_counts = tally(answers.iter().map(|(_, name)| name));
    assert_spread("udp", &udp_counts, 100, 0.25);
    for host in &BACKENDS {
        let received = lab
            .server(host.name)
            .stats()
            .udp_datagrams
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            received, udp_counts[host.name],
            "{} received {received} datagrams",
            host.name
        );
    }
    eprintln!("tcp {tcp_counts:?}, udp {udp_counts:?}; {}", lab.diag());
}
