//! The builder against the agent's own parser.

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use super::{
    render::{Value, quote},
    *,
};

fn everything() -> ConfigToml {
    let addr = Ipv4Addr::new(198, 51, 100, 2);
    ConfigToml::new()
        .pin_dir("/sys/fs/bpf/fo-x")
        .control_socket("/tmp/fo \"x\"/control.sock")
        .metrics("127.0.0.1:9399")
        .journal("/tmp/journal.jsonl")
        .max_new_flows_per_cpu(5_000)
        .max_flows(4_096)
        .tcp_timeouts(Duration::from_secs(120), Duration::from_secs(90))
        .interface("lbc", XdpMode::Native)
        .service(
            ServiceToml::tcp("web", Ipv4Addr::new(203, 0, 113, 10), 80)
                .failback_auto(Duration::from_millis(300))
                .table_size(251)
                .redundancy(Redundancy::NPlusOne)
                .dead_flows(DeadFlows::Keep)
                .min_healthy(Quorum::Percent(50))
                .quorum_policy(QuorumPolicy::FailOpen)
                .probe(
                    ProbeToml::http("/healthz")
                        .port(8081)
                        .interval(Duration::from_millis(100))
                        .timeout(Duration::from_micros(50_500))
                        .rise(2)
                        .fall(3),
                )
                .backend(BackendToml::new("a", addr).port(8080).weight(3))
                .backend(BackendToml::new("b", addr).port(8081).tier(1).cold(
                    &["/bin/sh", "-c", "echo {address}:{port}"],
                    Duration::from_secs(10),
                    Duration::from_secs(1),
                )),
        )
        .service(
            ServiceToml::udp("dns", Ipv4Addr::new(203, 0, 113, 10), 53)
                .failback_manual()
                .min_healthy(Quorum::Count(1))
                .backend(BackendToml::new("a", addr)),
        )
        .alert(
            AlertToml::webhook("http://127.0.0.1:9/hook")
                .timeout(Duration::from_secs(2))
                .retries(3),
        )
}

#[test]
fn the_agent_accepts_every_key_the_builder_writes() {
    let text = everything().render();
    let parsed =
        failover::config::AgentConfig::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(parsed.services.len(), 2);
    assert_eq!(parsed.conntrack.max_new_flows_per_cpu, 5_000);
    assert_eq!(parsed.conntrack.max_flows, 4_096);
    assert_eq!(parsed.conntrack.tcp_timeout, Duration::from_secs(120));
    assert_eq!(
        parsed.conntrack.tcp_closing_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        parsed.control_socket,
        PathBuf::from("/tmp/fo \"x\"/control.sock")
    );
}

#[test]
fn durations_are_written_in_their_largest_whole_unit() {
    let d = |d: Duration| d.toml();
    assert_eq!(d(Duration::from_secs(5)), "\"5s\"");
    assert_eq!(d(Duration::from_millis(250)), "\"250ms\"");
    assert_eq!(d(Duration::from_micros(50_500)), "\"50500us\"");
    assert_eq!(d(Duration::ZERO), "\"0s\"");
}

#[test]
fn strings_are_escaped() {
    assert_eq!(quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
}

#[test]
fn services_are_changed_in_place() {
    let mut config = everything();
    config.service_mut("web").backend_mut("b").tier = Some(0);
    let config = config.with_service("dns", |s| s.table_size(0));
    assert_eq!(config.services[0].backends[1].tier, Some(0));
    assert_eq!(config.services[1].table_size, Some(0));
    assert_eq!(config.services[1].name, "dns");
}
