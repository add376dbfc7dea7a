//! The Prometheus endpoint against the traffic sent and a failover.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use failover_tests::agent_lab::{AgentLab, HOSTS, PRIMARY};
use failover_tests::metrics::{metric, must};

use crate::{
    clients::{assert_answered_by, web},
    tcp_probe,
};

const METRICS_PORT: u16 = 9391;

fn scrape(lab: &AgentLab) -> String {
    failover_tests::metrics::scrape(lab, METRICS_PORT)
}

/// `GET /metrics` (inside the lb namespace) against known traffic: packet
/// counters rise with the connections sent, health, state, failover count,
/// gap and probe histogram follow a killed primary.
#[test]
fn metrics_follow_the_traffic_and_the_failover() {
    let mut lab = AgentLab::start_with(tcp_probe(), |_, config| {
        config.metrics(format!("127.0.0.1:{METRICS_PORT}"))
    });
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    let backend_labels = |name: &'static str, direction: &'static str| {
        [
            ("service", "web"),
            ("backend", name),
            ("direction", direction),
        ]
    };
    let before = scrape(&lab);
    // Requests answered (the TCP probes connect to the same port but send
    // no line).
    let connections_before = lab.servers[PRIMARY]
        .as_ref()
        .unwrap()
        .stats()
        .tcp_lines
        .load(Ordering::Relaxed);
    let to_primary_before = must(
        &before,
        "failover_backend_packets_total",
        &backend_labels("primary", "to_backend"),
    );
    let from_primary_before = must(
        &before,
        "failover_backend_packets_total",
        &backend_labels("primary", "from_backend"),
    );
    let to_standby_before = must(
        &before,
        "failover_backend_packets_total",
        &backend_labels("standby", "to_backend"),
    );
    for name in ["primary", "standby"] {
        let labels = [("service", "web"), ("backend", name)];
        assert_eq!(must(&before, "failover_backend_healthy", &labels), 1.0);
    }
    assert_eq!(must(&before, "failover_failovers_total", &[]), 0.0);
    assert_eq!(must(&before, "failover_datapath_up", &[]), 1.0);

    const N: usize = 40;
    assert_answered_by(&lab, web(), N, "primary");
    // The last packets of a closing connection (FIN, ACK) may trail the answer.
    std::thread::sleep(Duration::from_millis(300));
    let after = scrape(&lab);
    let connections = lab.servers[PRIMARY]
        .as_ref()
        .unwrap()
        .stats()
        .tcp_lines
        .load(Ordering::Relaxed)
        - connections_before;
    let to_primary = must(
        &after,
        "failover_backend_packets_total",
        &backend_labels("primary", "to_backend"),
    ) - to_primary_before;
    let from_primary = must(
        &after,
        "failover_backend_packets_total",
        &backend_labels("primary", "from_backend"),
    ) - from_primary_before;
    let to_standby = must(
        &after,
        "failover_backend_packets_total",
        &backend_labels("standby", "to_backend"),
    ) - to_standby_before;
    let web_to = [("service", "web"), ("direction", "to_backend")];
    let service_to = must(&after, "failover_service_packets_total", &web_to)
        - must(&before, "failover_service_packets_total", &web_to);
    eprintln!(
        "metrics: {N} connections sent (the primary answered {connections} requests): to the primary +{to_primary} packets, \
         from it +{from_primary}, to the standby +{to_standby}; service web to_backend total {service_to}"
    );
    assert_eq!(connections, N, "the primary's server saw another count");
    // SYN, ACK, the request, FIN (and the ACK of the server's FIN): at
    // least 3 per connection, and not wildly more.
    assert!(
        to_primary >= 3.0 * N as f64 && to_primary <= 10.0 * N as f64,
        "to_backend packets rose by {to_primary} for {N} connections"
    );
    assert!(
        from_primary >= 2.0 * N as f64 && from_primary <= 10.0 * N as f64,
        "from_backend packets rose by {from_primary} for {N} connections"
    );
    assert_eq!(to_standby, 0.0, "packets went to the standby");
    // Every connection was a flow on the primary, seen just now: the flow
    // counter's next walk (every 200 ms) shows them.
    let started = Instant::now();
    loop {
        let text = scrape(&lab);
        let flows = |name| {
            must(
                &text,
                "failover_backend_flows",
                &[("service", "web"), ("backend", name)],
            )
        };
        let entries = must(&text, "failover_flow_entries", &[]);
        if flows("primary") >= N as f64 && entries >= N as f64 {
            assert_eq!(flows("standby"), 0.0, "flows on the standby");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{N} connections, but {} flows on the primary and {entries} entries",
            flows("primary")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A service's packets are its backends' packets, and `inspect` reads
    // the same counters as `/metrics` (nothing else moved them meanwhile:
    // probes are sent by the edge host itself, not through XDP).
    assert_eq!(
        service_to,
        to_primary + to_standby,
        "the service's packet counter does not add up to its backends'"
    );
    let inspected = lab.inspect(&["backends"]);
    for name in ["primary", "standby"] {
        let address = HOSTS[if name == "primary" { PRIMARY } else { 1 }]
            .addr
            .to_string();
        let row = inspected
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == address.as_str() && r["service"] == 0)
            .unwrap_or_else(|| panic!("{name} not in {inspected:#}"));
        for (column, direction) in [
            ("packets_to", "to_backend"),
            ("packets_from", "from_backend"),
        ] {
            assert_eq!(
                row[column].as_f64(),
                Some(must(
                    &after,
                    "failover_backend_packets_total",
                    &backend_labels(name, direction)
                )),
                "{name} {direction}: inspect and /metrics disagree"
            );
        }
    }
    for name in ["primary", "standby"] {
        let labels = [("service", "web"), ("backend", name)];
        let probes = must(&after, "failover_probe_latency_seconds_count", &labels);
        assert!(probes > 0.0, "no probe latency recorded for {name}");
        let ok = must(
            &after,
            "failover_probe_results_total",
            &[("service", "web"), ("backend", name), ("result", "ok")],
        );
        assert!(ok > 0.0, "{name}: no successful probe counted");
    }

    // Kill the primary: health 0/1, one failover, a gap.
    drop(lab.servers[PRIMARY].take());
    lab.wait_log("new flows switched", Duration::from_secs(5));
    let started = Instant::now();
    let failed = loop {
        let text = scrape(&lab);
        if metric(&text, "failover_failovers_total", &[]) == Some(1.0) {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failover_failovers_total never reached 1:\n{text}\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let primary = [("service", "web"), ("backend", "primary")];
    let standby = [("service", "web"), ("backend", "standby")];
    assert_eq!(must(&failed, "failover_backend_healthy", &primary), 0.0);
    assert_eq!(must(&failed, "failover_backend_healthy", &standby), 1.0);
    assert_eq!(must(&failed, "failover_backend_active", &primary), 0.0);
    assert_eq!(must(&failed, "failover_backend_active", &standby), 1.0);
    let primary_down = [
        ("service", "web"),
        ("backend", "primary"),
        ("state", "down"),
    ];
    assert_eq!(must(&failed, "failover_backend_state", &primary_down), 1.0);
    assert_eq!(must(&failed, "failover_failbacks_total", &[]), 0.0);
    assert!(must(&failed, "failover_transitions_total", &[]) >= 1.0);
    let gap = must(&failed, "failover_last_failover_gap_seconds", &[]);
    assert!(gap > 0.0 && gap < 2.0, "last failover gap {gap}");
    let failed_probes = must(
        &failed,
        "failover_probe_results_total",
        &[
            ("service", "web"),
            ("backend", "primary"),
            ("result", "failed"),
        ],
    );
    assert!(
        failed_probes >= 3.0,
        "failed probes of the primary: {failed_probes}"
    );
    eprintln!("metrics: after killing the primary: gap {gap:.3} s, {failed_probes} failed probes");

    // Traffic now counts on the standby.
    let to_standby_before = must(
        &failed,
        "failover_backend_packets_total",
        &backend_labels("standby", "to_backend"),
    );
    assert_answered_by(&lab, web(), 10, "standby");
    std::thread::sleep(Duration::from_millis(300));
    let last = scrape(&lab);
    let to_standby = must(
        &last,
        "failover_backend_packets_total",
        &backend_labels("standby", "to_backend"),
    ) - to_standby_before;
    assert!(to_standby >= 30.0, "to the standby: +{to_standby}");
}
