use std::time::Duration;

use super::*;
use crate::{config::limits, dataplane::AttachMode, decide::policy::Failback};

const EXAMPLE: &str = r#"
pin_dir = "/sys/fs/bpf/failover-test"

[[interfaces]]
name = "eth0"
mode = "native"

[[services]]
name = "web"
vip = "203.0.113.10"
port = 80
protocol = "tcp"
failback = "auto"
failback_delay = "5s"

[services.probe]
type = "http"
path = "/healthz"
interval = "100ms"
timeout = "50ms"
rise = 2
fall = 3

[[services.backends]]
name = "primary"
address = "198.51.100.11"
port = 8080
tier = 0

[[services.backends]]
name = "standby"
address = "198.51.100.12"
port = 8080
tier = 1
probe = { type = "tcp", interval = "1s", timeout = "200ms" }
"#;

#[test]
fn example_resolves_with_overrides_and_defaults() {
    let config = AgentConfig::parse(EXAMPLE).unwrap();
    assert_eq!(
        config.interfaces,
        vec![("eth0".to_owned(), AttachMode::Native)]
    );
    let web = &config.services[0];
    assert_eq!(
        web.failback,
        Failback::Auto {
            delay: Duration::from_secs(5)
        }
    );
    let primary = &web.backends[0];
    assert_eq!(primary.probe.interval, Duration::from_millis(100));
    assert_eq!(primary.probe.jitter, Duration::from_millis(10));
    assert!(
        matches!(&primary.probe.kind, ProbeKind::Http { port: 8080, path, status, .. } if path == "/healthz" && *status == (200..=399))
    );
    let standby = &web.backends[1];
    assert_eq!(standby.spec.tier, 1);
    // Backend override replaces type and timing; rise/fall come from the service.
    assert_eq!(standby.probe.kind, ProbeKind::Tcp { port: 8080 });
    assert_eq!(standby.probe.interval, Duration::from_secs(1));
    assert_eq!((standby.probe.rise, standby.probe.fall), (2, 3));
}

fn error_of(text: &str) -> String {
    AgentConfig::parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let text = EXAMPLE.replace("rise = 2", "rise = 2\nrize = 3");
    let err = error_of(&text);
    assert!(err.contains("rize") && err.contains("line 22"), "{err}");
}

#[test]
fn semantic_errors_name_field_and_line() {
    let err = error_of(&EXAMPLE.replace("timeout = \"50ms\"", "timeout = \"150ms\""));
    assert!(
        err.contains("services.web.backends.primary.probe.timeout") && err.contains("line 20"),
        "{err}"
    );
    let err = error_of(&EXAMPLE.replace("name = \"standby\"", "name = \"primary\""));
    assert!(
        err.contains("backend name used twice") && err.contains("line 31"),
        "{err}"
    );
    let err = error_of(&EXAMPLE.replace("failback_delay = \"5s\"", "failback_delay = \"soon\""));
    assert!(
        err.contains("failback_delay") && err.contains("not a duration"),
        "{err}"
    );
}

#[test]
fn every_duration_and_number_has_a_bound() {
    let cases = [
        (
            "failback_delay = \"5s\"",
            "failback_delay = \"3000000000000000h\"",
            "failback_delay",
        ),
        ("interval = \"100ms\"", "interval = \"0.001ms\"", "interval"),
        ("interval = \"100ms\"", "interval = \"2h\"", "interval"),
        ("rise = 2", "rise = 0", "rise"),
        ("fall = 3", "fall = 100000", "fall"),
        ("tier = 1\n", "tier = 1\nweight = 1000000\n", "weight"),
        (
            "path = \"/healthz\"",
            "path = \"/healthz\"\nmax_response_bytes = 1",
            "max_response_bytes",
        ),
        (
            "path = \"/healthz\"",
            "path = \"/healthz\"\nmax_response_bytes = 100000000000",
            "max_response_bytes",
        ),
    ];
    for (from, to, field) in cases {
        let text = EXAMPLE.replacen(from, to, 1);
        assert_ne!(text, EXAMPLE, "{from}");
        let err = error_of(&text);
        assert!(
            err.contains(field) && (err.contains("out of bounds") || err.contains("must be")),
            "{to}: {err}"
        );
    }
    let journal = format!("{EXAMPLE}\n[journal]\npath = \"/tmp/j\"\nmax_bytes = 10\n");
    assert!(error_of(&journal).contains("journal.max_bytes"));
    let alert = format!("{EXAMPLE}\n[[alerts]]\nexec = [\"x\"]\nretries = 99\ntimeout = \"1h\"\n");
    assert!(error_of(&alert).contains("alerts[0]."));
    // The longest detection the bounds allow is still a valid duration.
    let longest = limits::PROBE_INTERVAL
        .end()
        .checked_mul(*limits::RISE_FALL.end());
    assert!(longest.is_some());
}

#[test]
fn settings_of_another_probe_type_are_rejected() {
    let err = error_of(&EXAMPLE.replace(
        "probe = { type = \"tcp\",",
        "probe = { type = \"tcp\", send = \"x\",",
    ));
    assert!(
        err.contains("send") && err.contains("not a setting"),
        "{err}"
    );
}

#[test]
fn empty_and_duplicate_services_are_rejected() {
    assert!(error_of("").contains("at least one"));
    let doubled = format!(
        "{EXAMPLE}\n{}",
        &EXAMPLE[EXAMPLE.find("[[services]]").unwrap()..]
    );
    assert!(error_of(&doubled).contains("used twice"));
}

#[test]
fn a_backend_endpoint_shared_between_services_is_refused() {
    let service = |name: &str, port: u16, backend_port: u16| {
        format!(
            "[[services]]\nname = \"{name}\"\nvip = \"203.0.113.10\"\nport = {port}\nprotocol = \"tcp\"\n\
             [[services.backends]]\nname = \"a\"\naddress = \"198.51.100.2\"\nport = {backend_port}\n\
             [[services.backends]]\nname = \"b\"\naddress = \"198.51.100.3\"\nport = {backend_port}\n"
        )
    };
    // Replies find their VIP by the backend's endpoint alone.
    let shared = format!("{}{}", service("web", 80, 8080), service("alt", 81, 8080));
    let err = error_of(&shared);
    assert!(
        err.contains("services.alt.backends.a")
            && err.contains("198.51.100.2:8080/tcp also serves service web")
            && err.contains("own backend port"),
        "{err}"
    );
    let apart = format!("{}{}", service("web", 80, 8080), service("alt", 81, 8090));
    AgentConfig::parse(&apart).unwrap();
    // The same address on another protocol is another endpoint.
    let udp = service("alt", 81, 8080).replace("\"tcp\"", "\"udp\"");
    AgentConfig::parse(&format!("{}{udp}", service("web", 80, 8080))).unwrap();
}

#[test]
fn operations_sections() {
    let text = format!(
        "{EXAMPLE}\n[control]\nsocket = \"/run/fo.sock\"\n[metrics]\nlisten = \"127.0.0.1:9999\"\n\
         [journal]\npath = \"/var/log/fo.jsonl\"\n[[alerts]]\nwebhook = \"http://127.0.0.1:8000/hook\"\n\
         [[alerts]]\nexec = [\"/bin/true\"]\nevents = [\"failover\"]\n"
    );
    let config = AgentConfig::parse(&text).unwrap();
    assert_eq!(config.control_socket, PathBuf::from("/run/fo.sock"));
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9999".parse().unwrap())
    );
    assert_eq!(
        config.journal.as_ref().unwrap().max_bytes,
        DEFAULT_JOURNAL_MAX_BYTES
    );
    assert_eq!(config.alerts.len(), 2);
    assert_eq!(config.alerts[0].events.len(), DEFAULT_ALERT_EVENTS.len());
    assert_eq!(
        config.alerts[1].events,
        vec![crate::events::EventKind::Failover]
    );

    let defaults = AgentConfig::parse(EXAMPLE).unwrap();
    assert_eq!(
        defaults.metrics_listen,
        Some(DEFAULT_METRICS_LISTEN.parse().unwrap())
    );
    assert!(defaults.journal.is_none() && defaults.alerts.is_empty());

    let bad = format!("{EXAMPLE}\n[[alerts]]\nwebhook = \"https://example.invalid\"\n");
    assert!(error_of(&bad).contains("http://"));
    let bad = format!("{EXAMPLE}\n[[alerts]]\nexec = [\"x\"]\nevents = [\"nope\"]\n");
    assert!(error_of(&bad).contains("unknown event"));
}

#[test]
fn the_shipped_sample_config_is_valid() {
    let config = AgentConfig::parse(include_str!("../../../dist/failover.toml")).unwrap();
    assert_eq!(config.services.len(), 2);
    assert!(config.journal.is_some() && config.alerts.len() == 1);
}

/// The first TOML block of the README with a service: what a new operator
/// copies.
fn readme_configuration() -> &'static str {
    include_str!("../../../README.md")
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("[[services]]") && block.contains("pin_dir"))
        .expect("the README shows a configuration")
}

#[test]
fn the_readme_configuration_is_valid() {
    let block = readme_configuration();
    let config = AgentConfig::parse(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert!(config.journal.is_some());
    assert_eq!(config.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn the_readme_configurations_commented_sections_are_valid_uncommented() {
    // An operator building a fleet uncomments `[routing]` and `[sync]`.
    let block = readme_configuration();
    let mut uncommented = String::new();
    let mut in_section = false;
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            if rest.starts_with('[') {
                in_section = rest.starts_with("[routing]") || rest.starts_with("[sync]");
            }
            if in_section {
                uncommented += rest;
                uncommented.push('\n');
                continue;
            }
        } else {
            in_section = false;
        }
        uncommented += line;
        uncommented.push('\n');
    }
    assert!(uncommented.contains("\n[sync]") && uncommented.contains("\n[routing]"));
    let config = AgentConfig::parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert!(config.routing.is_some());
    let sync = config.sync.expect("[sync]");
    assert_eq!(sync.interval, crate::config::DEFAULT_SYNC_INTERVAL);
}

#[test]
fn table_size_must_be_prime_or_zero() {
    let with = |size: &str| {
        EXAMPLE.replace(
            "failback_delay = \"5s\"",
            &format!("failback_delay = \"5s\"\ntable_size = {size}"),
        )
    };
    assert_eq!(
        AgentConfig::parse(&with("251")).unwrap().services[0].table_size,
        251
    );
    assert_eq!(
        AgentConfig::parse(&with("0")).unwrap().services[0].table_size,
        0
    );
    assert_eq!(
        AgentConfig::parse(EXAMPLE).unwrap().services[0].table_size,
        crate::decide::maglev::DEFAULT_TABLE_SIZE
    );
    assert!(error_of(&with("256")).contains("table_size"));
}

#[test]
fn quorum_and_dead_flow_settings() {
    let with = |extra: &str| {
        EXAMPLE.replace(
            "failback_delay = \"5s\"",
            &format!("failback_delay = \"5s\"\n{extra}"),
        )
    };
    let plan = AgentConfig::parse(&with(
        "min_healthy = \"50%\"\nquorum_policy = \"fail_open\"\ndead_flows = \"keep\"",
    ))
    .unwrap()
    .services
    .remove(0);
    assert_eq!(
        plan.quorum,
        Some((
            crate::decide::policy::Quorum::Percent(50),
            crate::decide::policy::QuorumPolicy::FailOpen
        ))
    );
    assert_eq!(plan.dead_flows, crate::decide::policy::DeadFlows::Keep);
    let plan = AgentConfig::parse(&with("min_healthy = 2"))
        .unwrap()
        .services
        .remove(0);
    assert_eq!(
        plan.quorum,
        Some((
            crate::decide::policy::Quorum::Count(2),
            crate::decide::policy::QuorumPolicy::NextTier
        ))
    );
    assert!(error_of(&with("min_healthy = \"lots\"")).contains("min_healthy"));
    assert!(error_of(&with("quorum_policy = \"fail_open\"")).contains("needs min_healthy"));
    assert!(error_of(&with("dead_flows = \"cut\"")).contains("dead_flows"));
}

#[test]
fn cold_standby_settings() {
    let text = EXAMPLE.replace(
        "probe = { type = \"tcp\", interval = \"1s\", timeout = \"200ms\" }",
        "temperature = \"cold\"\nstart_command = [\"/usr/local/bin/start\", \"{address}\"]\nstart_timeout = \"20s\"",
    );
    let config = AgentConfig::parse(&text).unwrap();
    let standby = &config.services[0].backends[1];
    assert_eq!(standby.spec.state, crate::model::BackendState::Down);
    let cold = standby.cold.as_ref().unwrap();
    assert_eq!(cold.timeout, Duration::from_secs(20));
    assert_eq!(cold.command.as_ref().unwrap()[1], "{address}");
    let hot_primary = text.replace("tier = 0", "tier = 0\ntemperature = \"cold\"");
    assert!(error_of(&hot_primary).contains("less preferred tier"));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("-1s"), None);
    assert_eq!(parse_duration("1 fortnight"), None);
}

#[test]
fn conntrack_settings_have_defaults_and_bounds() {
    let config = AgentConfig::parse(EXAMPLE).unwrap();
    assert_eq!(config.conntrack, super::ConntrackConfig::default());
    assert_eq!(config.conntrack.max_flows, 262_144);
    let text = format!(
        "{EXAMPLE}\n[conntrack]\nmax_flows = 1048576\ntcp_timeout = \"2h\"\n\
         tcp_closing_timeout = \"5s\"\nudp_timeout = \"30s\"\nmax_new_flows_per_cpu = 50000\n"
    );
    let config = AgentConfig::parse(&text).unwrap();
    let settings = config.conntrack.settings();
    assert_eq!(config.conntrack.max_flows, 1_048_576);
    assert_eq!(settings.tcp_open_ns, 7_200 * 1_000_000_000);
    assert_eq!(settings.tcp_closing_ns, 5 * 1_000_000_000);
    assert_eq!(settings.udp_ns, 30 * 1_000_000_000);
    assert_eq!(settings.max_new_flows_per_cpu, 50_000);
    for (line, field) in [
        ("max_flows = 100", "conntrack.max_flows"),
        ("max_flows = 99999999", "conntrack.max_flows"),
        ("udp_timeout = \"10ms\"", "conntrack.udp_timeout"),
        ("tcp_timeout = \"200h\"", "conntrack.tcp_timeout"),
        (
            "max_new_flows_per_cpu = 10",
            "conntrack.max_new_flows_per_cpu",
        ),
    ] {
        let err = error_of(&format!("{EXAMPLE}\n[conntrack]\n{line}\n"));
        assert!(
            err.contains(field) && err.contains("out of bounds"),
            "{line}: {err}"
        );
    }
    let err = error_of(&format!("{EXAMPLE}\n[conntrack]\nmax_entries = 5\n"));
    assert!(err.contains("max_entries"), "{err}");
}

#[test]
fn ipv6_services_resolve_and_mixed_families_are_refused_with_their_line() {
    let v6 = EXAMPLE
        .replace("vip = \"203.0.113.10\"", "vip = \"2001:db8::10\"")
        .replace("198.51.100.11", "2001:db8:1::11")
        .replace("198.51.100.12", "2001:db8:1::12");
    let config = AgentConfig::parse(&v6).unwrap();
    let web = &config.services[0];
    assert_eq!(
        web.spec.vip,
        "2001:db8::10".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(web.spec.to_string(), "[2001:db8::10]:80/tcp");
    assert_eq!(
        web.backends[1].spec.addr,
        "2001:db8:1::12".parse::<std::net::IpAddr>().unwrap()
    );

    // An IPv4 VIP with an IPv6 backend, and the other way round.
    let backend = EXAMPLE.replace("address = \"198.51.100.12\"", "address = \"fd00::12\"");
    let err = error_of(&backend);
    assert!(
        err.contains("services.web.backends.standby.address")
            && err.contains("line 32")
            && err
                .contains("fd00::12 is an IPv6 address but the service's VIP 203.0.113.10 is IPv4")
            && err.contains("one family"),
        "{err}"
    );
    let vip = EXAMPLE.replace("vip = \"203.0.113.10\"", "vip = \"2001:db8::10\"");
    let err = error_of(&vip);
    assert!(
        err.contains("services.web.backends.primary.address")
            && err.contains(
                "198.51.100.11 is an IPv4 address but the service's VIP 2001:db8::10 is IPv6"
            ),
        "{err}"
    );
    // Still a plain syntax error for what is no address at all.
    let bad = EXAMPLE.replace("vip = \"203.0.113.10\"", "vip = \"203.0.113\"");
    assert!(error_of(&bad).contains("invalid IP address syntax"));
}

#[test]
fn passive_detection_is_off_unless_configured_and_bounded() {
    let config = AgentConfig::parse(EXAMPLE).unwrap();
    assert_eq!(config.services[0].passive, None);
    let on = EXAMPLE.replace(
        "[services.probe]",
        "[services.passive]\nresets = 5\nwindow = \"500ms\"\n\n[services.probe]",
    );
    let passive = AgentConfig::parse(&on).unwrap().services[0]
        .passive
        .expect("passive settings");
    assert_eq!(passive.resets, 5);
    assert_eq!(passive.window, Duration::from_millis(500));
    assert_eq!(passive.unreachable, 3);
    assert_eq!(passive.unanswered, 5);
    assert_eq!(passive.syn_timeout, Duration::from_millis(200));
    assert_eq!(passive.max_ejected_percent, 50);
    for (line, field) in [
        ("window = \"10ms\"", "passive.window"),
        ("resets = 0", "passive.resets"),
        ("unanswered = 0", "passive.unanswered"),
        ("syn_timeout = \"1ms\"", "passive.syn_timeout"),
        ("max_ejected_percent = 101", "passive.max_ejected_percent"),
    ] {
        let text = EXAMPLE.replace(
            "[services.probe]",
            &format!("[services.passive]\n{line}\n\n[services.probe]"),
        );
        let err = error_of(&text);
        assert!(
            err.contains(field) && err.contains("out of bounds"),
            "{line}: {err}"
        );
    }
    let longer = EXAMPLE.replace(
        "[services.probe]",
        "[services.passive]\nsyn_timeout = \"1s\"\n\n[services.probe]",
    );
    let err = error_of(&longer);
    assert!(
        err.contains("passive.syn_timeout") && err.contains("not shorter than the window"),
        "{err}"
    );
    let unknown = EXAMPLE.replace(
        "[services.probe]",
        "[services.passive]\nresetz = 5\n\n[services.probe]",
    );
    assert!(error_of(&unknown).contains("resetz"));
}

#[test]
fn flap_damping_is_off_unless_configured_and_consistent() {
    let config = AgentConfig::parse(EXAMPLE).unwrap();
    assert_eq!(config.services[0].damping, None);
    let with = |lines: &str| {
        EXAMPLE.replace(
            "[services.probe]",
            &format!("[services.damping]\n{lines}\n\n[services.probe]"),
        )
    };
    let damping = AgentConfig::parse(&with("half_life = \"5s\""))
        .unwrap()
        .services[0]
        .damping
        .expect("damping settings");
    assert_eq!(damping.half_life, Duration::from_secs(5));
    assert_eq!(
        (damping.suppress, damping.reuse, damping.penalty),
        (2000, 1000, 1000)
    );
    assert_eq!(damping.max_suppress, Duration::from_secs(60));
    for (lines, field, says) in [
        ("half_life = \"10ms\"", "damping.half_life", "out of bounds"),
        ("penalty = 0", "damping.penalty", "out of bounds"),
        ("reuse = 3000", "damping.reuse", "not below suppress"),
        (
            "max_suppress = \"5s\"",
            "damping.max_suppress",
            "nothing would ever be suppressed",
        ),
    ] {
        let err = error_of(&with(lines));
        assert!(err.contains(field) && err.contains(says), "{lines}: {err}");
    }
}

#[test]
fn slow_start_and_redispatch_are_read_and_bounded() {
    let config = AgentConfig::parse(EXAMPLE).unwrap();
    assert_eq!(config.services[0].slow_start, None);
    assert!(config.services[0].redispatch, "redispatch is on by default");
    let with =
        |line: &str| EXAMPLE.replace("[services.probe]", &format!("{line}\n\n[services.probe]"));
    let on = AgentConfig::parse(&with("slow_start = \"30s\"\nredispatch = false")).unwrap();
    assert_eq!(on.services[0].slow_start, Some(Duration::from_secs(30)));
    assert!(!on.services[0].redispatch);
    let err = error_of(&with("slow_start = \"2h\""));
    assert!(
        err.contains("slow_start") && err.contains("out of bounds"),
        "{err}"
    );
}
