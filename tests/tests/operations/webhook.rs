//! Webhook and journal.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{AgentLab, BACKEND_PORT, PRIMARY, STANDBY};
use failover_tests::config::AlertToml;
use serde_json::Value;

use crate::{receiver::HookReceiver, tcp_probe};

const HOOK_PORT: u16 = 9392;

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
    lab.servers[PRIMARY] = Some(
        failover_tests::servers::BackendServer::start(
            &lab.backends[PRIMARY],
            "primary",
            BACKEND_PORT,
            failover_tests::agent_lab::BACKEND_UDP_PORT,
        )
        .also_on(
            &lab.backends[PRIMARY],
            failover_tests::agent_lab::SECOND_SERVICE_PORT,
        ),
    );
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
