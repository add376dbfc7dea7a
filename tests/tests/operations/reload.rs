//! Reload: `failover reload` and SIGHUP, good and bad configurations.

use std::{net::SocketAddr, time::Duration};

use failover_tests::agent_lab::{AgentLab, HOSTS, PRIMARY, SECOND_SERVICE_PORT, STANDBY, VIP};
use failover_tests::{
    config::{BackendToml, ConfigToml, ProbeToml, ServiceToml},
    load::summary,
    status::{backend, names, service},
};

use crate::{
    clients::{assert_answered_by, load_on_web, open_long, web},
    decisions::{decisions, decisions_of},
    tcp_probe,
};

/// A second TCP service on the same backends (reload test).
const API_PORT: u16 = 81;

fn api() -> SocketAddr {
    SocketAddr::from((VIP, API_PORT))
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The `api` service (VIP:81 → the same backends' :8088, their second
/// service port, TCP probes):
/// `(backend index, tier)` per backend, probe `interval` and `timeout`.
fn api_service(backends: &[(usize, u8)], interval: Duration, timeout: Duration) -> ServiceToml {
    let probe = ProbeToml::tcp()
        .interval(interval)
        .timeout(timeout)
        .rise(2)
        .fall(3);
    let mut api = ServiceToml::tcp("api", VIP, API_PORT)
        .failback_auto(Duration::from_secs(5))
        .probe(probe);
    for (i, tier) in backends {
        let host = &HOSTS[*i];
        api = api.backend(
            BackendToml::new(host.name, host.addr)
                .port(SECOND_SERVICE_PORT)
                .tier(*tier),
        );
    }
    api
}

/// The lab's config with the api service replaced by `api`.
fn with_api(lab: &AgentLab, api: ServiceToml) -> ConfigToml {
    let mut config = lab.config().clone();
    config.remove_service("api");
    config.service(api)
}

/// The (1-based) line of `needle` in `text`, which holds it once.
fn line_of(text: &str, needle: &str) -> usize {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "{needle:?} once in:\n{text}"
    );
    let offset = text.find(needle).expect("needle in the config");
    text[..offset].matches('\n').count() + 1
}

/// Two services (web :80, api :81, same backends). Under load on web,
/// api's configuration changes through `failover reload` and SIGHUP: api
/// follows, web's flows, state and decisions do not move. Bad
/// configurations are refused with field and line, and change nothing.
#[test]
fn reload_changes_one_service_and_leaves_the_other_and_its_flows_alone() {
    let mut lab = AgentLab::start_with(tcp_probe(), |_, config| {
        config.service(api_service(&[(PRIMARY, 0), (STANDBY, 1)], ms(100), ms(50)))
    });
    let good = lab.config().clone();
    let initial = lab.status();
    assert_eq!(service(&initial, "api").new_flows_to, ["primary"]);
    assert_answered_by(&lab, api(), 10, "primary");
    let web_before = decisions_of(&initial, "web");

    let long = open_long(&lab, web(), 3, "primary");
    let repicks = lab.counter("event_repick");
    let (load, t0) = load_on_web(
        &lab,
        Duration::from_millis(20),
        long,
        Duration::from_millis(500),
    );

    // 1. `failover reload`: api's tiers swapped and its probe slower.
    let swapped = with_api(
        &lab,
        api_service(&[(PRIMARY, 1), (STANDBY, 0)], ms(200), ms(50)),
    );
    lab.write_config(&swapped);
    let dry = lab.ctl_json(&["reload", "--dry-run"]);
    assert_eq!(names(&dry["changed"]), ["api"], "{dry:#}");
    assert_eq!(
        service(&lab.status(), "api").new_flows_to,
        ["primary"],
        "a dry-run reload changed api"
    );
    let diff = lab.ctl_json(&["reload"]);
    assert_eq!(names(&diff["changed"]), ["api"], "{diff:#}");
    assert_eq!(names(&diff["unchanged"]), ["web"], "{diff:#}");
    assert!(names(&diff["added"]).is_empty() && names(&diff["removed"]).is_empty());
    let st = lab.status();
    assert_eq!(service(&st, "api").new_flows_to, ["standby"], "{st:#?}");
    assert_eq!(backend(&st, "api", "primary").tier, 1, "{st:#?}");
    assert_eq!(backend(&st, "api", "standby").tier, 0, "{st:#?}");
    assert_eq!(decisions_of(&st, "web"), web_before, "reload changed web");
    assert_answered_by(&lab, api(), 10, "standby");

    // 2. SIGHUP: api loses its primary.
    let only_standby = with_api(&lab, api_service(&[(STANDBY, 0)], ms(200), ms(50)));
    lab.write_config(&only_standby);
    let pid = lab.agent_pid();
    // SAFETY: kill(2) to our own running child, by its pid.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) },
        0,
        "SIGHUP to the agent {pid}"
    );
    lab.wait_log("reloaded on SIGHUP", Duration::from_secs(5));
    let hup_line = lab.log_lines("reloaded on SIGHUP");
    assert!(
        hup_line.len() == 1 && hup_line[0].contains("changed [\"api\"]"),
        "{hup_line:#?}"
    );
    let st = lab.status();
    let api_backends: Vec<String> = service(&st, "api")
        .backends
        .iter()
        .map(|b| b.name.clone())
        .collect();
    assert_eq!(api_backends, ["standby"], "{st:#?}");
    assert_eq!(service(&st, "api").new_flows_to, ["standby"]);
    assert_eq!(decisions_of(&st, "web"), web_before, "SIGHUP changed web");
    assert_answered_by(&lab, api(), 10, "standby");

    // 3. Bad configurations are refused with the field and line; nothing changes.
    let settled = decisions(&lab.status());
    // A syntax error is what no typed configuration can hold: api's
    // interval (the only 200 ms one) is unquoted in the rendered text.
    let syntax = with_api(&lab, api_service(&[(STANDBY, 0)], ms(200), ms(50)))
        .render()
        .replacen("interval = \"200ms\"", "interval = 200ms", 1);
    let syntax_line = line_of(&syntax, "interval = 200ms");
    std::fs::write(lab.config_path(), &syntax).unwrap();
    let (ok, message) = lab.ctl_output(&["reload"]);
    eprintln!(
        "reload with a syntax error (line {syntax_line}): {}",
        message.trim()
    );
    assert!(!ok, "a config with a syntax error was accepted: {message}");
    assert!(
        message.contains(&format!("line {syntax_line}")) && message.contains("interval"),
        "the refusal does not name line {syntax_line} and the field: {message}"
    );
    assert_eq!(
        decisions(&lab.status()),
        settled,
        "a refused reload changed the status"
    );

    let invalid = with_api(&lab, api_service(&[(STANDBY, 0)], ms(200), ms(500)));
    let invalid_line = line_of(&invalid.render(), "timeout = \"500ms\"");
    lab.write_config(&invalid);
    let (ok, message) = lab.ctl_output(&["reload"]);
    eprintln!(
        "reload with timeout > interval (line {invalid_line}): {}",
        message.trim()
    );
    assert!(
        !ok,
        "a config with timeout > interval was accepted: {message}"
    );
    assert!(
        message.contains(&format!("line {invalid_line}")) && message.contains("probe.timeout"),
        "the refusal does not name line {invalid_line} and the field: {message}"
    );
    assert_eq!(
        decisions(&lab.status()),
        settled,
        "a refused reload changed the status"
    );
    assert_answered_by(&lab, api(), 5, "standby");

    // Back to the original configuration: api as at the start.
    lab.write_config(&good);
    let diff = lab.ctl_json(&["reload"]);
    assert_eq!(names(&diff["changed"]), ["api"], "{diff:#}");
    std::thread::sleep(Duration::from_millis(500));
    let recorded = load.finish();

    let failures = recorded.failures();
    eprintln!(
        "reload: web under load through three reloads and two refusals: {} new flows, {} long-lived requests, {failures} failed",
        recorded.new_flows.len(),
        recorded.long.iter().map(Vec::len).sum::<usize>()
    );
    assert_eq!(failures, 0, "{:?}\n{}", recorded.failed(t0), lab.diag());
    assert!(
        recorded
            .new_flows
            .iter()
            .all(|s| s.result.as_deref() == Ok("primary")),
        "web's new flows moved: {}",
        summary(&recorded.new_flows, t0)
    );
    for (i, samples) in recorded.long.iter().enumerate() {
        assert!(
            samples.len() >= 20,
            "long connection {i}: {}",
            samples.len()
        );
        assert!(
            samples.iter().all(|s| s.result.as_deref() == Ok("primary")),
            "web's long connection {i}: {}",
            summary(samples, t0)
        );
    }
    assert_eq!(
        lab.counter("event_repick"),
        repicks,
        "a flow was re-picked by a reload\n{}",
        lab.diag()
    );
    let last = lab.status();
    assert_eq!(decisions_of(&last, "web"), web_before);
    assert_eq!(
        decisions_of(&last, "api"),
        decisions_of(&initial, "api"),
        "api not back to its original configuration"
    );
}
