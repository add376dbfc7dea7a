//! The operations features against the real agent (`failover run`) in the
//! namespace lab of `failover_tests::agent_lab`: planned switchover under
//! continuous client load, drain with a deadline, reload (CLI and SIGHUP,
//! good and bad configurations), the Prometheus endpoint cross-checked
//! against the traffic sent, the webhook alert and the journal, and the
//! failover drill.
//!
//! The CLI verbs run in the test's own namespace and reach the agent over
//! its control socket (a path in the lab's temp dir). Everything the agent
//! listens on besides (metrics, the test's webhook receiver) is on
//! 127.0.0.1 inside the lb namespace; client traffic stays between the
//! lab's namespaces. Every loop and thread is bounded.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use failover_tests::agent_lab::{
    AgentLab, BACKEND_PORT, Failback, HOSTS, Options, PRIMARY, Probe, SERVICE_PORT, STANDBY, VIP,
    ask, load_with_long,
};
use failover_tests::{
    config::{AlertToml, BackendToml, ConfigToml, ProbeToml, ServiceToml},
    load::{Failed, Sample, connect, request, summary},
    metrics::{metric, must},
    status::{StatusAnswer, backend, names, service},
};
use serde_json::Value;

/// Every load thread and receiver gives up after this, whatever the test does.
const MAX_LIFETIME: Duration = Duration::from_secs(120);
/// Timeout of each client connection (connect, send, receive).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// A second TCP service on the same backends (reload test).
const API_PORT: u16 = 81;

fn tcp_probe() -> Options {
    Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

fn web() -> SocketAddr {
    SocketAddr::from((VIP, SERVICE_PORT))
}

fn api() -> SocketAddr {
    SocketAddr::from((VIP, API_PORT))
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

// ---- The CLI ----------------------------------------------------------------

/// What status says about decisions, without the counters that move on
/// their own (probe counts and latencies, packets, flows, uptime).
fn decisions(status: &StatusAnswer) -> Value {
    let services: Vec<Value> = status.services.iter().map(service_decisions).collect();
    Value::Array(services)
}

/// One service's decisions (see [`decisions`]).
fn service_decisions(s: &failover_tests::status::ServiceStatus) -> Value {
    let backends: Vec<Value> = s
        .backends
        .iter()
        .map(|b| {
            serde_json::json!({
                "name": b.name, "address": b.address, "port": b.port,
                "tier": b.tier, "healthy": b.healthy, "state": b.state,
                "admin": b.admin,
            })
        })
        .collect();
    serde_json::json!({
        "name": s.name, "vip": s.vip, "port": s.port,
        "protocol": s.protocol, "new_flows_to": s.new_flows_to,
        "backends": backends,
    })
}

fn decisions_of(status: &StatusAnswer, service_name: &str) -> Value {
    service_decisions(service(status, service_name))
}

// ---- Clients ------------------------------------------------------------------

/// `n` long-lived connections to `target`, each checked to be answered by
/// `by` once.
fn open_long(lab: &AgentLab, target: SocketAddr, n: usize, by: &str) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut stream = lab
                .client
                .run(|| connect(target, Duration::from_secs(2)))
                .unwrap_or_else(|e| panic!("long connection {i}: {e}\n{}", lab.diag()));
            let first = ask(&mut stream)
                .unwrap_or_else(|e| panic!("long connection {i}: {e}\n{}", lab.diag()));
            assert_eq!(first, by, "long connection {i}");
            stream
        })
        .collect()
}

/// `n` new connections from the client to `target`, one every ~10 ms: the
/// answering backends.
fn sample(lab: &AgentLab, target: SocketAddr, n: usize) -> Vec<Result<String, Failed>> {
    lab.client.run(|| {
        (0..n)
            .map(|_| {
                let result = request(target, REQUEST_TIMEOUT);
                std::thread::sleep(Duration::from_millis(10));
                result
            })
            .collect()
    })
}

// ---- 1. Switchover under load ------------------------------------------------------

/// `switchover web --to standby` and back under a new connection every 10 ms
/// and three long-lived connections asking every 50 ms: no request fails,
/// new flows follow each switch at once, the long-lived flows stay on the
/// primary (drained, not cut) and none is re-picked.
#[test]
fn switchover_under_continuous_load_fails_no_request() {
    let lab = AgentLab::start(tcp_probe());
    let repicks = lab.counter("event_repick");
    let long = open_long(&lab, web(), 3, "primary");
    let t0 = Instant::now();
    let load = load_with_long(
        &lab.client,
        Duration::from_millis(10),
        REQUEST_TIMEOUT,
        long,
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_secs(1));

    let to_standby = Instant::now();
    let report = lab.ctl_json(&["switchover", "web", "--to", "standby"]);
    let on_standby = Instant::now();
    assert_eq!(names(&report["new_flows_after"]), ["standby"], "{report:#}");
    assert_eq!(
        report["changes"],
        serde_json::json!([{"backend": "primary", "state": "draining"}]),
        "{report:#}"
    );
    std::thread::sleep(Duration::from_millis(2000));
    let during = lab.status();
    assert_eq!(service(&during, "web").new_flows_to, ["standby"]);
    let primary = backend(&during, "web", "primary");
    assert_eq!(primary.state, "draining", "{during:#?}");
    assert_eq!(
        primary.admin.as_deref(),
        Some("standing by: switchover to standby"),
        "{during:#?}"
    );
    assert_eq!(
        service(&during, "web").switchover.as_deref(),
        Some("standby")
    );
    assert!(
        primary.active_flows >= 3,
        "the long-lived flows are not counted on the drained primary: {during:#?}"
    );

    let to_primary = Instant::now();
    let report = lab.ctl_json(&["switchover", "web", "--to", "primary"]);
    let on_primary = Instant::now();
    assert_eq!(names(&report["new_flows_after"]), ["primary"], "{report:#}");
    std::thread::sleep(Duration::from_millis(2000));
    let recorded = load.finish();

    // Switching back leaves the standby a plain standby again.
    let after = lab.status();
    assert_eq!(service(&after, "web").new_flows_to, ["primary"]);
    for name in ["primary", "standby"] {
        let b = backend(&after, "web", name);
        assert_eq!(b.state, "up", "{after:#?}");
        assert!(b.admin.is_none(), "{after:#?}");
    }

    let failed = recorded.failures();
    let long_asks: usize = recorded.long.iter().map(Vec::len).sum();
    let standby_window: Vec<&Sample> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= on_standby && s.done < to_primary)
        .collect();
    let primary_window: Vec<&Sample> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= on_primary)
        .collect();
    eprintln!(
        "switchover under load: {} new flows, {long_asks} requests on {} long-lived connections; \
         switchover to the standby took {} ms, back {} ms; FAILED REQUESTS: {failed}\n  new flows {}",
        recorded.new_flows.len(),
        recorded.long.len(),
        (on_standby - to_standby).as_millis(),
        (on_primary - to_primary).as_millis(),
        summary(&recorded.new_flows, t0),
    );
    assert_eq!(
        failed,
        0,
        "requests failed: {:?}\n{}",
        recorded.failed(t0),
        lab.diag()
    );
    // New flows: the primary before, the standby right after the switchover
    // returned, the primary again right after the switch back.
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.done < to_standby)
            .all(|s| s.result.as_deref() == Ok("primary")),
        "{}",
        summary(&recorded.new_flows, t0)
    );
    assert!(
        standby_window.len() >= 50,
        "too few new flows while switched over: {}",
        standby_window.len()
    );
    assert!(
        standby_window
            .iter()
            .all(|s| s.result.as_deref() == Ok("standby")),
        "new flows after `switchover --to standby` not on the standby: {}",
        summary(&recorded.new_flows, t0)
    );
    assert!(primary_window.len() >= 50, "{}", primary_window.len());
    assert!(
        primary_window
            .iter()
            .all(|s| s.result.as_deref() == Ok("primary")),
        "new flows after `switchover --to primary` not on the primary: {}",
        summary(&recorded.new_flows, t0)
    );
    // The long-lived ones stayed on the primary all along (drained, not cut).
    for (i, samples) in recorded.long.iter().enumerate() {
        assert!(
            samples
                .iter()
                .filter(|s| s.started >= on_standby && s.done < to_primary)
                .count()
                >= 10,
            "long connection {i} barely asked while switched over: {}",
            summary(samples, t0)
        );
        assert!(
            samples.iter().any(|s| s.started >= on_primary),
            "long connection {i} not asked after the switch back"
        );
        assert!(
            samples.iter().all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i}: {}",
            summary(samples, t0)
        );
    }
    assert_eq!(
        lab.counter("event_repick"),
        repicks,
        "a flow was re-picked\n{}",
        lab.diag()
    );
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 2 && switched.iter().all(|l| l.contains("switchover")),
        "{switched:#?}"
    );
}

// ---- 2. Drain with a deadline ------------------------------------------------------

/// `drain --dry-run` changes nothing; `drain --deadline 4s --no-wait`: new
/// flows leave the primary at once, its long-lived flows keep answering
/// (and are counted in status) until the deadline, when the backend goes
/// down and their next packet is re-picked onto the standby, which has no
/// socket for them and resets them; `undrain` returns it.
#[test]
fn drain_keeps_long_flows_until_the_deadline_then_repicks_them() {
    let lab = AgentLab::start(tcp_probe());
    let long = open_long(&lab, web(), 3, "primary");

    // A dry run changes nothing.
    let before = decisions(&lab.status());
    let dry = lab.ctl_json(&["drain", "web/primary", "--deadline", "4s", "--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    assert_eq!(names(&dry["new_flows_after"]), ["standby"], "{dry:#}");
    let dry_text = lab.ctl(&["drain", "web/primary", "--deadline", "4s", "--dry-run"]);
    assert!(dry_text.contains("dry run: would drain"), "{dry_text}");
    assert_eq!(
        decisions(&lab.status()),
        before,
        "a dry run changed the status"
    );
    let after_dry = sample(&lab, web(), 10);
    assert!(
        after_dry.iter().all(|r| r.as_deref() == Ok("primary")),
        "{after_dry:?}"
    );

    let repicks = lab.counter("event_repick");
    let t0 = Instant::now();
    let load = load_with_long(
        &lab.client,
        Duration::from_millis(20),
        REQUEST_TIMEOUT,
        long,
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let report = lab.ctl_json(&["drain", "web/primary", "--deadline", "4s", "--no-wait"]);
    let drained = Instant::now();
    assert_eq!(
        report["changes"],
        serde_json::json!([{"backend": "primary", "state": "draining"}]),
        "{report:#}"
    );
    assert_eq!(names(&report["new_flows_after"]), ["standby"], "{report:#}");
    let deadline_earliest = asked + Duration::from_secs(4);
    let deadline_latest = drained + Duration::from_secs(4);

    // Follow it through status, as `failover drain` without --no-wait does.
    let mut polls: Vec<(Duration, String, u64)> = Vec::new();
    while drained.elapsed() < Duration::from_secs(6) {
        let st = lab.status();
        let primary = backend(&st, "web", "primary");
        let state = primary.state.clone();
        let flows = primary.active_flows;
        assert_eq!(primary.admin.as_deref(), Some("drained"), "{st:#?}");
        assert_eq!(service(&st, "web").new_flows_to, ["standby"]);
        polls.push((drained.elapsed(), state, flows));
        std::thread::sleep(Duration::from_millis(250));
    }
    let recorded = load.finish();
    let repicked = lab.counter("event_repick") - repicks;
    eprintln!(
        "drain: status polls (t, primary state, active flows) {:?}",
        polls
            .iter()
            .map(|(t, s, f)| format!("{:.2}s {s} {f}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    for (i, samples) in recorded.long.iter().enumerate() {
        eprintln!(
            "drain: long connection {i} (times from 0.5 s before the drain): {}",
            summary(samples, t0)
        );
    }
    eprintln!(
        "drain: new flows {}; {repicked} re-picked packets",
        summary(&recorded.new_flows, t0)
    );

    // Before the deadline: draining, the long-lived flows counted as active.
    let before_deadline: Vec<_> = polls
        .iter()
        .filter(|(t, _, _)| drained + *t + Duration::from_millis(200) < deadline_earliest)
        .collect();
    assert!(before_deadline.len() >= 4, "{polls:?}");
    for (t, state, flows) in &before_deadline {
        assert_eq!(state, "draining", "at {t:?}: {polls:?}");
        assert!(*flows >= 3, "active flows at {t:?}: {polls:?}");
    }
    // After it: down.
    let last = polls.last().unwrap();
    assert_eq!(last.1, "down", "{polls:?}\n{}", lab.diag());
    // New flows: never failed; on the standby from the drain on.
    assert!(
        recorded.new_flows.iter().all(|s| s.result.is_ok()),
        "{}",
        summary(&recorded.new_flows, t0)
    );
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.started >= drained)
            .all(|s| s.result.as_deref() == Ok("standby")),
        "new flows went to the drained primary: {}",
        summary(&recorded.new_flows, t0)
    );
    // Long-lived flows: answered by the primary until the deadline; their
    // first request after it is re-picked (never the primary again).
    let mut after_deadline = Vec::new();
    for (i, samples) in recorded.long.iter().enumerate() {
        let until_deadline: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.done + Duration::from_millis(100) < deadline_earliest)
            .collect();
        assert!(
            until_deadline.len() >= 40,
            "long connection {i}: {}",
            summary(samples, t0)
        );
        assert!(
            until_deadline
                .iter()
                .all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i} before the deadline: {}",
            summary(samples, t0)
        );
        // Each load thread stops at its connection's first failure: the
        // last request is the first one the data path re-picked.
        let (last, earlier) = samples.split_last().unwrap();
        assert!(
            earlier.iter().all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i}: {}",
            summary(samples, t0)
        );
        assert!(
            last.started + Duration::from_millis(50) >= deadline_earliest
                && last.started <= deadline_latest + Duration::from_millis(1500),
            "long connection {i}: its last request was not the first after the deadline: {}",
            summary(samples, t0)
        );
        // The standby has no socket for the re-picked flow and resets it.
        assert!(
            matches!(&last.result, Err(e) if e.io == std::io::ErrorKind::ConnectionReset),
            "long connection {i} after the deadline: {}",
            summary(samples, t0)
        );
        after_deadline.push(format!(
            "{} ms after the drain: {:?}",
            last.started.saturating_duration_since(drained).as_millis(),
            last.result
        ));
    }
    eprintln!(
        "drain: first request on each long connection after the deadline: {after_deadline:?}"
    );
    assert!(
        repicked >= 3,
        "the long-lived flows were not re-picked ({repicked})\n{}",
        lab.diag()
    );

    // Undrain: the primary takes new flows again.
    let report = lab.ctl_json(&["undrain", "web/primary"]);
    assert_eq!(names(&report["new_flows_after"]), ["primary"], "{report:#}");
    let st = lab.status();
    let primary = backend(&st, "web", "primary");
    assert_eq!(primary.state, "up", "{st:#?}");
    assert!(primary.admin.is_none(), "{st:#?}");
    let back = sample(&lab, web(), 20);
    assert!(
        back.iter().all(|r| r.as_deref() == Ok("primary")),
        "{back:?}"
    );
    assert_eq!(decisions(&st), before, "undrain did not restore the status");
}

// ---- 3. Reload -----------------------------------------------------------------------

/// The `api` service (VIP:81 → the same backends' :8080, TCP probes):
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
                .port(BACKEND_PORT)
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
    let api_first = sample(&lab, api(), 10);
    assert!(
        api_first.iter().all(|r| r.as_deref() == Ok("primary")),
        "{api_first:?}"
    );
    let web_before = decisions_of(&initial, "web");

    let long = open_long(&lab, web(), 3, "primary");
    let repicks = lab.counter("event_repick");
    let t0 = Instant::now();
    let load = load_with_long(
        &lab.client,
        Duration::from_millis(20),
        REQUEST_TIMEOUT,
        long,
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(500));

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
    let api_swapped = sample(&lab, api(), 10);
    assert!(
        api_swapped.iter().all(|r| r.as_deref() == Ok("standby")),
        "api after the reload: {api_swapped:?}\n{}",
        lab.diag()
    );

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
    let api_hup = sample(&lab, api(), 10);
    assert!(
        api_hup.iter().all(|r| r.as_deref() == Ok("standby")),
        "{api_hup:?}"
    );

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
    let api_after_bad = sample(&lab, api(), 5);
    assert!(
        api_after_bad.iter().all(|r| r.as_deref() == Ok("standby")),
        "{api_after_bad:?}"
    );

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

// ---- 4. Metrics ------------------------------------------------------------------------

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
    let answers = sample(&lab, web(), N);
    assert!(
        answers.iter().all(|r| r.as_deref() == Ok("primary")),
        "{answers:?}"
    );
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
    let answers = sample(&lab, web(), 10);
    assert!(
        answers.iter().all(|r| r.as_deref() == Ok("standby")),
        "{answers:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let last = scrape(&lab);
    let to_standby = must(
        &last,
        "failover_backend_packets_total",
        &backend_labels("standby", "to_backend"),
    ) - to_standby_before;
    assert!(to_standby >= 30.0, "to the standby: +{to_standby}");
}

// ---- 5. Webhook and journal ------------------------------------------------------

const HOOK_PORT: u16 = 9392;

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
struct Hooked {
    head: String,
    body: String,
}

/// An HTTP receiver on 127.0.0.1 inside the lb namespace answering 204.
struct HookReceiver {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Hooked>>>,
    thread: Option<JoinHandle<()>>,
}

impl HookReceiver {
    fn start(lab: &AgentLab, port: u16) -> Self {
        let listener = lab
            .lb
            .run(|| TcpListener::bind((Ipv4Addr::LOCALHOST, port)))
            .expect("bind the webhook receiver in the lb namespace");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, got) = (stop.clone(), got.clone());
            std::thread::Builder::new()
                .name("webhook".into())
                .spawn(move || {
                    let begun = Instant::now();
                    while !stop.load(Ordering::Relaxed) && begun.elapsed() < MAX_LIFETIME {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                if let Some(hooked) = receive(stream) {
                                    got.lock().unwrap().push(hooked);
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                })
                .expect("spawn the webhook receiver")
        };
        Self {
            stop,
            got,
            thread: Some(thread),
        }
    }

    fn got(&self) -> Vec<Hooked> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (head and Content-Length body) and answers 204.
fn receive(mut stream: TcpStream) -> Option<Hooked> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if data.len() > 64 * 1024 {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while data.len() < head_end + length && data.len() < 1024 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let body_end = (head_end + length).min(data.len());
    Some(Hooked {
        head,
        body: String::from_utf8_lossy(&data[head_end..body_end]).into_owned(),
    })
}

fn is_web_failover(event: &Value) -> bool {
    event["kind"] == "failover"
        && event["service"] == "web"
        && event["details"]["from"] == serde_json::json!(["primary"])
        && event["details"]["to"] == serde_json::json!(["standby"])
}

/// A killed primary: the webhook gets a POST of the failover event (from and
/// to in its details), and the journal has the same event as a JSON line.
#[test]
fn webhook_and_journal_get_the_failover() {
    let mut lab = AgentLab::start_with(tcp_probe(), |dir, config| {
        config.journal(dir.join("journal.jsonl")).alert(
            AlertToml::webhook(format!("http://127.0.0.1:{HOOK_PORT}/hook"))
                .timeout(Duration::from_secs(2))
                .retries(3),
        )
    });
    let journal = lab.dir().join("journal.jsonl");
    let receiver = HookReceiver::start(&lab, HOOK_PORT);

    let killed = Instant::now();
    drop(lab.servers[PRIMARY].take());
    let event = loop {
        let got = receiver.got();
        let found = got.iter().find_map(|h| {
            let event: Value = serde_json::from_str(&h.body).ok()?;
            is_web_failover(&event).then(|| (h.clone(), event))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no failover POST within 10 s; got {got:#?}\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (hooked, event) = event;
    eprintln!(
        "webhook: failover POST {} ms after the kill: {}",
        killed.elapsed().as_millis(),
        hooked.body
    );
    assert!(
        hooked.head.starts_with("POST /hook HTTP/1.1\r\n"),
        "{}",
        hooked.head
    );
    assert!(
        hooked
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        hooked.head
    );
    assert!(event["message"].as_str().is_some_and(|m| m.contains("web")));
    assert!(event["time"].is_string(), "{event}");
    assert_eq!(event["details"]["cause"], "backend failed", "{event}");

    // The journal has the same decision as a JSON line.
    let started = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(is_web_failover);
        if let Some(line) = found {
            break line;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no failover line in the journal {}:\n{text}\n{}",
            journal.display(),
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        line["time"], event["time"],
        "journal {line}\nwebhook {event}"
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["kind"].as_str().unwrap_or("?").to_owned())
        .collect();
    eprintln!("journal kinds: {kinds:?}");
    assert!(
        kinds.first().map(String::as_str) == Some("agent_start")
            && kinds.iter().any(|k| k == "backend_down"),
        "{kinds:?}"
    );
    // Backend health flips are not among the alert's default events.
    let hook_kinds: Vec<String> = receiver
        .got()
        .iter()
        .filter_map(|h| serde_json::from_str::<Value>(&h.body).ok())
        .map(|e| e["kind"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert!(
        !hook_kinds.iter().any(|k| k == "backend_down"),
        "{hook_kinds:?}"
    );

    // The other default alert events reach the hook too: failback (the
    // primary back, after its 5 s delay), quorum_lost (nothing left for new
    // flows), agent_stop and agent_start.
    lab.servers[PRIMARY] = Some(failover_tests::servers::BackendServer::start(
        &lab.backends[PRIMARY],
        "primary",
        BACKEND_PORT,
        failover_tests::agent_lab::BACKEND_UDP_PORT,
    ));
    wait_for_hook(&lab, &receiver, "failback", Duration::from_secs(10));
    drop(lab.servers[PRIMARY].take());
    drop(lab.servers[STANDBY].take());
    wait_for_hook(&lab, &receiver, "quorum_lost", Duration::from_secs(5));
    lab.stop_agent();
    wait_for_hook(&lab, &receiver, "agent_stop", Duration::from_secs(5));
    lab.start_agent();
    wait_for_hook(&lab, &receiver, "agent_start", Duration::from_secs(5));
}

/// Waits (bounded) until the hook received an event of `kind`.
fn wait_for_hook(lab: &AgentLab, receiver: &HookReceiver, kind: &str, bound: Duration) {
    let started = Instant::now();
    loop {
        let kinds: Vec<String> = receiver
            .got()
            .iter()
            .filter_map(|h| serde_json::from_str::<Value>(&h.body).ok())
            .map(|e| e["kind"].as_str().unwrap_or("?").to_owned())
            .collect();
        if kinds.iter().any(|k| k == kind) {
            return;
        }
        assert!(
            started.elapsed() < bound,
            "no {kind} event reached the hook within {bound:?}: {kinds:?}\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- 6. Drill ------------------------------------------------------------------------

/// `failover drill web` under client load: reports its three steps, passes,
/// leaves new flows on the primary and both backends undrained; no request
/// fails and no flow is re-picked.
#[test]
fn drill_switches_verifies_and_returns_with_no_failed_request() {
    let lab = AgentLab::start(tcp_probe());
    let repicks = lab.counter("event_repick");
    let long = open_long(&lab, web(), 2, "primary");
    let t0 = Instant::now();
    let load = load_with_long(
        &lab.client,
        Duration::from_millis(10),
        REQUEST_TIMEOUT,
        long,
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(500));
    let drill_started = Instant::now();
    let out = lab.ctl(&["drill", "web", "--verify-for", "10s"]);
    let drill_done = Instant::now();
    eprintln!(
        "drill ({} ms):\n{out}",
        (drill_done - drill_started).as_millis()
    );
    for step in [
        "drill web: primary -> standby -> primary",
        "1. switchover to standby",
        "2. verified: standby is healthy and answered",
        "3. switched back to primary",
        "drill passed",
    ] {
        assert!(
            out.contains(step),
            "no {step:?} in the drill's report:\n{out}"
        );
    }
    std::thread::sleep(Duration::from_millis(1000));
    let recorded = load.finish();

    let st = lab.status();
    assert_eq!(service(&st, "web").new_flows_to, ["primary"]);
    for name in ["primary", "standby"] {
        let b = backend(&st, "web", name);
        assert_eq!(b.state, "up", "{st:#?}");
        assert!(b.admin.is_none(), "{st:#?}");
    }
    let failed = recorded.failures();
    let on_standby = recorded
        .new_flows
        .iter()
        .filter(|s| s.result.as_deref() == Ok("standby"))
        .count();
    eprintln!(
        "drill under load: {} new flows ({on_standby} on the standby during the drill), {} long-lived requests, {failed} failed",
        recorded.new_flows.len(),
        recorded.long.iter().map(Vec::len).sum::<usize>()
    );
    assert_eq!(failed, 0, "{:?}\n{}", recorded.failed(t0), lab.diag());
    assert!(on_standby >= 1, "{}", summary(&recorded.new_flows, t0));
    // Only flows that started during the drill went to the standby.
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.result.as_deref() == Ok("standby"))
            .all(|s| s.started >= drill_started && s.started <= drill_done),
        "{}",
        summary(&recorded.new_flows, t0)
    );
    assert!(
        recorded
            .new_flows
            .iter()
            .filter(|s| s.started > drill_done)
            .all(|s| s.result.as_deref() == Ok("primary")),
        "new flows after the drill: {}",
        summary(&recorded.new_flows, t0)
    );
    for (i, samples) in recorded.long.iter().enumerate() {
        assert!(
            samples.iter().all(|s| s.result.as_deref() == Ok("primary")),
            "long connection {i}: {}",
            summary(samples, t0)
        );
    }
    let after = sample(&lab, web(), 20);
    assert!(
        after.iter().all(|r| r.as_deref() == Ok("primary")),
        "{after:?}"
    );
    assert_eq!(lab.counter("event_repick"), repicks, "{}", lab.diag());
}
