use std::time::Duration;

use failover_common::stats::reason;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{http::parse_request_line, *};
use crate::outputs::telemetry::{
    AnnouncementView, BackendView, FlowsView, LATENCY_BUCKETS, ProbeStats, ServiceView, Totals,
};

fn backend(name: &str, id: u32, healthy: bool, state: &str) -> BackendView {
    BackendView {
        name: name.to_owned(),
        id,
        address: format!("198.51.100.{}", 10 + id),
        port: Some(8080),
        tier: id as u8,
        weight: 1,
        healthy,
        state: state.to_owned(),
        admin: None,
        damping_penalty: None,
        suppressed_for_s: None,
        slow_start_share: None,
        probe: ProbeStats::default(),
    }
}

fn snapshot() -> Snapshot {
    let mut primary = backend("primary", 1, false, "down");
    primary.weight = 3;
    for ms in [0.3, 0.3, 7.0, 30.0, 3000.0] {
        primary
            .probe
            .record(ms < 1000.0, Duration::from_secs_f64(ms / 1000.0), None);
    }
    let mut standby = backend("stand\"by\\2\nx", 2, true, "draining");
    standby.admin = Some("drained".to_owned());
    Snapshot {
        services: vec![ServiceView {
            name: "web".to_owned(),
            id: 7,
            vip: "203.0.113.10".to_owned(),
            port: 80,
            protocol: "tcp".to_owned(),
            active: vec!["primary".to_owned()],
            switched_to: None,
            backends: vec![primary, standby],
        }],
        totals: Totals {
            transitions_total: 3,
            failovers_total: 1,
            failbacks_total: 0,
            map_write_failures_total: 0,
            services_out_of_sync: 0,
            switches: Vec::new(),
            last_failover_gap_seconds: Some(0.21),
        },
        started_seconds_ago: 12.5,
        egress: Default::default(),
        announcements: vec![AnnouncementView {
            vip: "203.0.113.10".to_owned(),
            announced: true,
            why: "serving web".to_owned(),
        }],
        sync: Some(crate::flow_sync::SyncView {
            listen: "198.18.1.2:4790".into(),
            interval_ms: 500,
            caught_up: true,
            pinned_flows: 3,
            rounds_total: 10,
            flows_sent_total: 30,
            peers: vec![crate::flow_sync::PeerView {
                peer: "198.18.2.2:4790".into(),
                heard_s_ago: Some(0.2),
                rounds_complete: 9,
                flows_received_total: 12,
                datagrams_lost_total: 0,
            }],
            received: [("learned".to_owned(), 4)].into(),
            refused: [("stranger".to_owned(), 1)].into(),
            ..Default::default()
        }),
        recent_events: Default::default(),
        flows: Some(FlowsView {
            entries: 42,
            active_by_backend: [(1, 7)].into(),
        }),
    }
}

fn datapath() -> DatapathCounters {
    let stats = |n: u64| TrafficStats {
        to_backend: Counter {
            packets: n,
            bytes: n * 100,
        },
        from_backend: Counter {
            packets: n + 1,
            bytes: n * 200,
        },
    };
    DatapathCounters {
        verdicts: (0..5)
            .map(|i| Counter {
                packets: i,
                bytes: i * 60,
            })
            .collect(),
        reasons: (0..reason::COUNT as u64)
            .map(|i| Counter {
                packets: i,
                bytes: 0,
            })
            .collect(),
        backends: [(1, stats(10)), (2, stats(20))].into(),
        services: [(7, stats(30))].into(),
        evidence: [(
            1,
            failover_common::Evidence {
                syns: 5,
                syn_acks: 4,
                syn_resets: 1,
                unreachable: 0,
            },
        )]
        .into(),
        flow_capacity: 262_144,
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn value(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')
            .map(str::to_owned)
    })
}

const PRIMARY: &str = r#"service="web",backend="primary",address="198.51.100.11""#;

#[test]
fn every_family_has_help_and_type_before_its_samples() {
    let text = render(&snapshot(), Some(&datapath()));
    let mut declared = Vec::new();
    for line in lines(&text) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            declared.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name.starts_with("failover_"), "{line}");
        } else {
            let series = line.split([' ', '{']).next().unwrap();
            let family = declared.last().expect("sample before any TYPE");
            let base = series
                .strip_suffix("_bucket")
                .or_else(|| series.strip_suffix("_sum"))
                .or_else(|| series.strip_suffix("_count"))
                .filter(|base| base == family)
                .unwrap_or(series);
            assert_eq!(base, family, "sample {line} outside its family");
        }
    }
    let mut unique = declared.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), declared.len(), "a family declared twice");
    assert!(text.contains("# HELP failover_failovers_total "));
    assert!(text.contains("# TYPE failover_probe_latency_seconds histogram\n"));
    assert!(text.contains("failover_vip_announced{vip=\"203.0.113.10\"} 1\n"));
    for series in [
        "failover_sync_pinned_flows 3\n",
        "failover_sync_flows_received_total{outcome=\"learned\"} 4\n",
        "failover_sync_refused_total{reason=\"stranger\"} 1\n",
        "failover_sync_peer_rounds_total{peer=\"198.18.2.2:4790\"} 9\n",
    ] {
        assert!(text.contains(series), "{series}");
    }
    assert!(text.ends_with('\n'));
}

#[test]
fn agent_metrics_follow_the_snapshot() {
    let text = render(&snapshot(), Some(&datapath()));
    assert_eq!(value(&text, "failover_datapath_up").as_deref(), Some("1"));
    assert_eq!(
        value(&text, "failover_agent_uptime_seconds").as_deref(),
        Some("12.5")
    );
    assert_eq!(
        value(&text, &format!("failover_backend_healthy{{{PRIMARY}}}")).as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&text, &format!("failover_backend_weight{{{PRIMARY}}}")).as_deref(),
        Some("3")
    );
    for (state, expected) in [("up", "0"), ("down", "1"), ("draining", "0")] {
        let series = format!("failover_backend_state{{{PRIMARY},state=\"{state}\"}}");
        assert_eq!(value(&text, &series).as_deref(), Some(expected), "{state}");
    }
    let results = |result: &str| {
        value(
            &text,
            &format!("failover_probe_results_total{{{PRIMARY},result=\"{result}\"}}"),
        )
    };
    assert_eq!(results("ok").as_deref(), Some("4"));
    assert_eq!(results("failed").as_deref(), Some("1"));
    assert_eq!(
        value(&text, "failover_failovers_total").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&text, "failover_transitions_total").as_deref(),
        Some("3")
    );
    assert_eq!(
        value(&text, "failover_last_failover_gap_seconds").as_deref(),
        Some("0.21")
    );
    assert_eq!(
        value(&text, r#"failover_service_active_backends{service="web"}"#).as_deref(),
        Some("1")
    );
    assert!(text.contains(r#"reason="drained"} 1"#));
    assert_eq!(
        value(&text, "failover_flow_capacity").as_deref(),
        Some("262144")
    );
}

#[test]
fn label_values_are_escaped() {
    let text = render(&snapshot(), None);
    let escaped = r#"backend="stand\"by\\2\nx""#;
    assert!(text.contains(escaped), "{text}");
    // The raw newline never reaches the output: every line is a comment or a sample.
    for line in lines(&text) {
        assert!(
            line.starts_with("# ") || line.starts_with("failover_"),
            "broken line {line:?}"
        );
    }
}

#[test]
fn histogram_buckets_are_cumulative_and_inf_equals_count() {
    let text = render(&snapshot(), None);
    let prefix = format!("failover_probe_latency_seconds_bucket{{{PRIMARY},le=\"");
    let buckets: Vec<(String, u64)> = lines(&text)
        .into_iter()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (le, count) = rest.split_once("\"} ").unwrap();
            (le.to_owned(), count.parse().unwrap())
        })
        .collect();
    assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets[0], ("0.0005".to_owned(), 2));
    assert_eq!(buckets[4], ("0.01".to_owned(), 3));
    assert_eq!(buckets[6], ("0.05".to_owned(), 4));
    assert_eq!(buckets[11], ("2.5".to_owned(), 4)); // the 3 s probe is only in +Inf
    let count = value(
        &text,
        &format!("failover_probe_latency_seconds_count{{{PRIMARY}}}"),
    );
    assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), 5));
    assert_eq!(count.as_deref(), Some("5"));
    let sum: f64 = value(
        &text,
        &format!("failover_probe_latency_seconds_sum{{{PRIMARY}}}"),
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!((sum - 3.0376).abs() < 1e-9, "{sum}");
}

#[test]
fn datapath_counters_are_labelled() {
    let text = render(&snapshot(), Some(&datapath()));
    let series = format!("failover_backend_packets_total{{{PRIMARY},direction=\"to_backend\"}}");
    assert_eq!(value(&text, &series).as_deref(), Some("10"));
    let series = format!("failover_backend_bytes_total{{{PRIMARY},direction=\"from_backend\"}}");
    assert_eq!(value(&text, &series).as_deref(), Some("2000"));
    let series = r#"failover_service_packets_total{service="web",direction="from_backend"}"#;
    assert_eq!(value(&text, series).as_deref(), Some("31"));
    let series = r#"failover_verdict_bytes_total{verdict="tx"}"#;
    assert_eq!(value(&text, series).as_deref(), Some("180"));
    let series = r#"failover_reason_packets_total{reason="drop_no_backend",kind="outcome"}"#;
    assert_eq!(value(&text, series).as_deref(), Some("15"));
    let series = r#"failover_reason_packets_total{reason="event_repick",kind="event"}"#;
    let expected = failover_common::stats::reason::EVENT_REPICK.to_string();
    assert_eq!(value(&text, series), Some(expected));
    assert_eq!(value(&text, "failover_flow_entries").as_deref(), Some("42"));
    let series = format!("failover_backend_flows{{{PRIMARY}}}");
    assert_eq!(value(&text, &series).as_deref(), Some("7"));
    let series = format!("failover_backend_evidence_total{{{PRIMARY},signal=\"syn_resets\"}}");
    assert_eq!(value(&text, &series).as_deref(), Some("1"));
    let series = format!("failover_backend_evidence_total{{{PRIMARY},signal=\"syns\"}}");
    assert_eq!(value(&text, &series).as_deref(), Some("5"));
}

#[test]
fn without_maps_only_agent_metrics_and_datapath_down() {
    let text = render(&snapshot(), None);
    assert_eq!(value(&text, "failover_datapath_up").as_deref(), Some("0"));
    assert!(text.contains("failover_backend_healthy{"));
    for absent in [
        "failover_verdict_",
        "failover_reason_",
        "failover_flow_entries",
        "failover_backend_packets",
    ] {
        assert!(!text.contains(absent), "{absent} without maps");
    }
}

#[test]
fn request_lines_parse() {
    assert_eq!(
        parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x"),
        Some(("GET", "/metrics"))
    );
    assert_eq!(
        parse_request_line(b"GET /metrics?x=1 HTTP/1.0"),
        Some(("GET", "/metrics"))
    );
    assert_eq!(parse_request_line(b"GET /metrics"), None);
    assert_eq!(parse_request_line(b"GET /metrics SPDY/3"), None);
    assert_eq!(parse_request_line(b"\xff\xfe"), None);
}

async fn get(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        // A reset after the response (the server closed with unread
        // request bytes) ends the read like EOF does.
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            response.extend_from_slice(&chunk[..n]);
        }
    };
    timeout(Duration::from_secs(10), read)
        .await
        .expect("response in time");
    String::from_utf8(response).unwrap()
}

#[tokio::test]
async fn serves_metrics_and_404_over_http() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let telemetry = Telemetry::new();
    telemetry.update(|s| *s = snapshot());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pin_dir = std::env::temp_dir().join("failover-metrics-test-no-such-pin-dir");
    // A decision loop that answers `status` with a marker.
    let (calls, mut asked) = tokio::sync::mpsc::channel::<crate::control::Call>(4);
    tokio::spawn(async move {
        while let Some(call) = asked.recv().await {
            assert_eq!(call.request, crate::control::Request::Status {});
            let _ = call.reply.send(crate::control::Response::ok(
                serde_json::json!({"services": [], "marker": 7}),
            ));
        }
    });
    let server = tokio::spawn(serve_listener(
        listener,
        telemetry,
        pin_dir,
        Some(calls),
        async {
            let _ = stopped.await;
        },
    ));

    // A client that connects and sends nothing must not hold up the others.
    let _idle = TcpStream::connect(addr).await.unwrap();

    let response = get(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{head}"
    );
    assert!(body.contains("failover_failovers_total 1\n"), "{body}");
    assert!(body.contains("failover_datapath_up 0\n"), "{body}");

    // The status page, self-contained, and its data: the loop's answer.
    let response = get(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("Cache-Control: no-store"), "{head}");
    assert!(
        body.contains("fetch(\"/status.json\""),
        "refreshed from /status.json"
    );
    for external in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!body.contains(external), "an external asset: {external}");
    }
    let response = get(addr, b"GET /status.json HTTP/1.1\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(value["marker"], 7);
    let response = get(addr, b"HEAD / HTTP/1.1\r\n\r\n").await;
    assert!(
        response.ends_with("\r\n\r\n"),
        "HEAD has no body: {response}"
    );

    let response = get(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 404 "), "{response}");
    let response = get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_REQUEST_BYTES)
    );
    let response = get(addr, huge.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");

    stop.send(()).unwrap();
    timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}
