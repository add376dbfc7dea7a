use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::Instant,
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::mpsc::UnboundedReceiver,
    time::timeout,
};

use super::{
    webhook::{WebhookUrl, status},
    *,
};
use crate::events::EventBus;

/// A request a test receiver got.
#[derive(Debug)]
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver on 127.0.0.1 for at most 64 connections. It answers
/// the n-th request (0-based) with `answer(n)`, or when that is `None`
/// keeps the connection open without answering. Every request read is
/// reported.
async fn receiver(
    answer: impl Fn(usize) -> Option<u16> + Send + 'static,
) -> (String, UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?x=1", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0..64 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let status = answer(n);
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                let _ = tx.send(request);
                match status {
                    Some(status) => {
                        let response = format!(
                            "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                    }
                    None => sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    (url, rx)
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || data.len() > 65_536 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))?
        .trim()
        .parse()
        .ok()?;
    while data.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        head,
        body: data[head_end..head_end + length].to_vec(),
    })
}

fn webhook(url: &str, events: &[EventKind], limit_ms: u64, retries: u32) -> AlertConfig {
    AlertConfig {
        target: AlertTarget::Webhook {
            url: url.to_owned(),
        },
        events: events.to_vec(),
        timeout: Duration::from_millis(limit_ms),
        retries,
    }
}

fn exec_alert(script: &str, limit_ms: u64, retries: u32) -> AlertConfig {
    AlertConfig {
        target: AlertTarget::Exec {
            command: vec!["sh".into(), "-c".into(), script.into()],
        },
        events: vec![EventKind::Failover],
        timeout: Duration::from_millis(limit_ms),
        retries,
    }
}

fn failover(n: u32) -> Event {
    Event::new(
        EventKind::Failover,
        format!("web: primary -> standby ({n})"),
    )
    .service("web")
    .backend("standby")
    .details(serde_json::json!({ "n": n }))
}

/// Starts `run_with` on a fresh bus; returns the bus and the run.
fn start(
    alerts: Vec<AlertConfig>,
    capacity: usize,
) -> (EventBus, tokio::task::JoinHandle<RunStats>) {
    let bus = EventBus::new(64);
    let run = tokio::spawn(run_with(alerts, bus.subscribe(), capacity));
    (bus, run)
}

/// Closes the bus and waits (at most `within`) for the run to finish.
async fn finish(
    bus: EventBus,
    run: tokio::task::JoinHandle<RunStats>,
    within: Duration,
) -> RunStats {
    drop(bus);
    timeout(within, run)
        .await
        .expect("alerts finish within their bounds")
        .unwrap()
}

async fn next(rx: &mut UnboundedReceiver<Request>, within: Duration) -> Request {
    timeout(within, rx.recv())
        .await
        .expect("a request in time")
        .expect("receiver running")
}

fn drain(rx: &mut UnboundedReceiver<Request>) -> Vec<Request> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::test]
async fn webhook_receives_the_event_json() {
    let (url, mut requests) = receiver(|_| Some(200)).await;
    let (bus, run) = start(vec![webhook(&url, &[EventKind::Failover], 2000, 0)], 8);
    bus.publish(failover(1));
    let request = next(&mut requests, Duration::from_secs(5)).await;
    assert!(
        request.head.starts_with("POST /hook?x=1 HTTP/1.1\r\n"),
        "{}",
        request.head
    );
    assert!(request.head.contains("Content-Type: application/json\r\n"));
    assert!(request.head.contains("Connection: close\r\n"));
    assert!(request.head.contains("Host: 127.0.0.1:"));
    let json = request.json();
    assert_eq!(json["kind"], "failover");
    assert_eq!(json["service"], "web");
    assert_eq!(json["backend"], "standby");
    assert_eq!(json["details"]["n"], 1);
    let stats = finish(bus, run, Duration::from_secs(5)).await;
    assert_eq!((stats.lagged, stats.dropped), (0, vec![0]));
}

#[tokio::test]
async fn failed_attempts_are_retried_until_success() {
    let (url, mut requests) = receiver(|n| Some(if n < 2 { 500 } else { 200 })).await;
    let (bus, run) = start(vec![webhook(&url, &[EventKind::Failover], 2000, 5)], 8);
    bus.publish(failover(1));
    // 100 ms then 200 ms of backoff; well within 5 s.
    finish(bus, run, Duration::from_secs(5)).await;
    let got = drain(&mut requests);
    assert_eq!(
        got.len(),
        3,
        "two failures, then success, then no more attempts"
    );
    assert!(got.iter().all(|r| r.json()["details"]["n"] == 1));
}

#[tokio::test]
async fn dead_targets_give_up_in_bounds_without_delaying_others() {
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
        // Dropped here: nothing listens on that port any more.
    };
    let (silent, mut silent_requests) = receiver(|_| None).await;
    let (working, mut working_requests) = receiver(|_| Some(204)).await;
    let kinds = [EventKind::Failover];
    let alerts = vec![
        webhook(&unreachable, &kinds, 200, 2),
        webhook(&silent, &kinds, 200, 1),
        webhook(&working, &kinds, 2000, 0),
    ];
    let (bus, run) = start(alerts, QUEUE_CAPACITY);
    let started = Instant::now();
    for n in 0..3 {
        bus.publish(failover(n));
    }
    for n in 0..3 {
        let request = next(&mut working_requests, Duration::from_secs(2)).await;
        assert_eq!(request.json()["details"]["n"], n);
    }
    // The silent receiver needs 3 × (200 + 100 + 200) ms to be given up on.
    let prompt = started.elapsed();
    assert!(
        prompt < Duration::from_millis(1000),
        "working alert waited {prompt:?}"
    );

    // Bounds: unreachable 3 × (100 + 200) ms of backoff; silent 1.5 s.
    finish(bus, run, Duration::from_secs(6)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        drain(&mut silent_requests).len(),
        6,
        "two attempts per event"
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let (silent, mut requests) = receiver(|_| None).await;
    let (bus, run) = start(vec![webhook(&silent, &[EventKind::Failover], 300, 0)], 2);
    for n in 0..6 {
        bus.publish(failover(n));
    }
    // At most one in flight and two queued, 300 ms each.
    let stats = finish(bus, run, Duration::from_secs(5)).await;
    let delivered = drain(&mut requests).len() as u64;
    assert!(stats.dropped[0] >= 3, "{stats:?}");
    assert_eq!(delivered + stats.dropped[0], 6, "{stats:?}");
}

#[tokio::test]
async fn only_listed_kinds_are_delivered() {
    let (url, mut requests) = receiver(|_| Some(200)).await;
    let (bus, run) = start(vec![webhook(&url, &[EventKind::Failover], 2000, 0)], 8);
    bus.publish(Event::new(EventKind::BackendUp, "up").backend("primary"));
    bus.publish(failover(1));
    bus.publish(Event::new(EventKind::AgentStart, "started"));
    bus.publish(Event::new(EventKind::Operation, "drain"));
    finish(bus, run, Duration::from_secs(5)).await;
    let got = drain(&mut requests);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["kind"], "failover");
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "failover-alerts-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn exec_gets_the_json_on_stdin_and_is_retried_and_killed() {
    let dir = TempDir::new();
    let out = dir.0.join("event.json");
    let attempts = dir.0.join("attempts");
    let alerts = vec![
        exec_alert(&format!("cat > '{}'", out.display()), 5000, 0),
        exec_alert(
            &format!(
                "echo \"$FAILOVER_EVENT_KIND\" >> '{}'; exit 3",
                attempts.display()
            ),
            5000,
            2,
        ),
        // Killed at the time limit, its child `sleep` with it.
        exec_alert("sleep 30 & wait", 200, 0),
    ];
    let (bus, run) = start(alerts, 8);
    let started = Instant::now();
    bus.publish(failover(4));
    bus.publish(Event::new(EventKind::BackendDown, "not alerted"));
    finish(bus, run, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let json: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["kind"], "failover");
    assert_eq!(json["details"]["n"], 4);
    let tries = std::fs::read_to_string(&attempts).unwrap();
    assert_eq!(tries.lines().collect::<Vec<_>>(), ["failover"; 3]);
}

#[test]
fn webhook_urls_parse() {
    let url = WebhookUrl::parse("http://127.0.0.1:8080/hook?a=b").unwrap();
    assert_eq!(
        url,
        WebhookUrl {
            host: "127.0.0.1".into(),
            port: 8080,
            authority: "127.0.0.1:8080".into(),
            path: "/hook?a=b".into(),
        }
    );
    let url = WebhookUrl::parse("http://alerts.example").unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.path.as_str()),
        ("alerts.example", 80, "/")
    );
    let url = WebhookUrl::parse("http://[::1]:9000?x#frag").unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.path.as_str()),
        ("::1", 9000, "/?x")
    );
    assert_eq!(url.authority, "[::1]:9000");
    for bad in [
        "https://x/",
        "http://",
        "http://:80/",
        "http://h:0/",
        "http://h:70000",
        "http://u:p@h/",
        "http://[::1/",
    ] {
        assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn status_lines_and_backoff() {
    assert_eq!(status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
    assert_eq!(status(b"HTTP/1.0 500\r\n"), Some(500));
    assert_eq!(status(b"HTTP/1.1 20"), None);
    assert_eq!(status(b"SSH-2.0-OpenSSH\r\n"), None);
    assert_eq!(status(b""), None);
    let ms = |n| backoff(n).as_millis();
    assert_eq!(
        [ms(0), ms(1), ms(2), ms(4), ms(5), ms(31), ms(40)],
        [100, 200, 400, 1600, 2000, 2000, 2000]
    );
}
