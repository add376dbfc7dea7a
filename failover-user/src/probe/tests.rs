use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UdpSocket,
};

use super::*;
use crate::config::DEFAULT_MAX_RESPONSE_BYTES;

fn spec(kind: ProbeKind) -> ProbeSpec {
    ProbeSpec {
        kind,
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        rise: 1,
        fall: 1,
        jitter: Duration::ZERO,
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
    }
}

#[test]
fn status_lines() {
    assert_eq!(parse_status("HTTP/1.1 204 No Content\r\n"), Some(204));
    assert_eq!(parse_status("HTTP/1.0 999 Nope\r\n"), None);
    assert_eq!(parse_status("SSH-2.0-OpenSSH\r\n"), None);
    assert_eq!(parse_status(""), None);
}

async fn serve_once(response: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(response).await;
        }
    });
    port
}

#[tokio::test]
async fn http_checks_status_and_body() {
    let localhost = IpAddr::from(Ipv4Addr::LOCALHOST);
    let ok = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy").await;
    let kind = |port, body: Option<&str>| ProbeKind::Http {
        port,
        path: "/".into(),
        status: 200..=299,
        body: body.map(Into::into),
    };
    assert!(probe(&spec(kind(ok, Some("healthy"))), localhost).await.ok);
    let wrong_body = serve_once(b"HTTP/1.1 200 OK\r\n\r\nsick").await;
    let outcome = probe(&spec(kind(wrong_body, Some("healthy"))), localhost).await;
    assert!(
        !outcome.ok
            && matches!(&outcome.error, Some(ProbeError::BodyMismatch(text)) if text == "healthy"),
        "{outcome:?}"
    );
    let error = serve_once(b"HTTP/1.1 503 Busy\r\n\r\n").await;
    let outcome = probe(&spec(kind(error, None)), localhost).await;
    assert!(
        !outcome.ok
            && matches!(
                outcome.error,
                Some(ProbeError::Status {
                    code: 503,
                    low: 200,
                    high: 299
                })
            ),
        "{outcome:?}"
    );
}

/// Answers one request and keeps the connection open (keep-alive).
async fn serve_keeping_open(response: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        stream.write_all(response).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    port
}

#[tokio::test]
async fn a_keep_alive_backend_answers_within_the_timeout() {
    let localhost = IpAddr::from(Ipv4Addr::LOCALHOST);
    let kind = |port, body: Option<&str>| ProbeKind::Http {
        port,
        path: "/".into(),
        status: 200..=299,
        body: body.map(Into::into),
    };
    let head_only = serve_keeping_open(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    assert!(probe(&spec(kind(head_only, None)), localhost).await.ok);
    let sized = serve_keeping_open(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy").await;
    assert!(
        probe(&spec(kind(sized, Some("healthy"))), localhost)
            .await
            .ok
    );
    let chunked = serve_keeping_open(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nhealthy\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        probe(&spec(kind(chunked, Some("healthy"))), localhost)
            .await
            .ok
    );
}

#[tokio::test]
async fn udp_checks_the_expected_answer() {
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        for answer in [&b"pong"[..], b"nope"] {
            let (_, peer) = server.recv_from(&mut buf).await.unwrap();
            server.send_to(answer, peer).await.unwrap();
        }
    });
    let kind = ProbeKind::Udp {
        port,
        send: b"ping".to_vec(),
        expect: Some(b"pong".to_vec()),
    };
    assert!(
        probe(&spec(kind.clone()), Ipv4Addr::LOCALHOST.into())
            .await
            .ok
    );
    let outcome = probe(&spec(kind), Ipv4Addr::LOCALHOST.into()).await;
    assert!(
        !outcome.ok
            && matches!(&outcome.error, Some(ProbeError::AnswerMismatch(text)) if text == "pong"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn max_response_bytes_bounds_what_is_read() {
    // The expected text sits past the first 32 bytes.
    let port = serve_once(b"HTTP/1.1 200 OK\r\nX-Pad: 0123456789\r\n\r\nhealthy").await;
    let kind = ProbeKind::Http {
        port,
        path: "/".into(),
        status: 200..=299,
        body: Some("healthy".into()),
    };
    let mut small = spec(kind);
    small.max_response_bytes = 32;
    let outcome = probe(&small, Ipv4Addr::LOCALHOST.into()).await;
    assert!(!outcome.ok, "read past max_response_bytes");
}

#[tokio::test]
async fn a_silent_backend_costs_one_timeout() {
    // Accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let kind = ProbeKind::Http {
        port,
        path: "/".into(),
        status: 200..=299,
        body: None,
    };
    let started = Instant::now();
    let outcome = probe(&spec(kind), Ipv4Addr::LOCALHOST.into()).await;
    assert!(
        !outcome.ok && matches!(outcome.error, Some(ProbeError::TimedOut(_))),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn tcp_refused_fails_and_exec_follows_exit_code() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(
        !probe(
            &spec(ProbeKind::Tcp { port: closed }),
            Ipv4Addr::LOCALHOST.into()
        )
        .await
        .ok
    );
    assert!(
        probe(
            &spec(ProbeKind::Exec {
                command: vec!["true".into()],
                port: 1,
            }),
            Ipv4Addr::LOCALHOST.into()
        )
        .await
        .ok
    );
    assert!(
        !probe(
            &spec(ProbeKind::Exec {
                command: vec!["false".into()],
                port: 1,
            }),
            Ipv4Addr::LOCALHOST.into()
        )
        .await
        .ok
    );
}

#[test]
fn icmp_echo() {
    // Raw sockets and namespaces need root, which `cargo xtask test` has.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the icmp probe test needs root"
    );
    // In a namespace of our own: nothing we send can leave the machine.
    let ns = crate::lab::netns::NetNs::new("icmp");
    let (alive, unreachable) = ns.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut alive = Vec::new();
            let mut unreachable = Vec::new();
            // ICMP and ICMPv6 echo. No route to TEST-NET-1 or the
            // documentation prefix in this namespace: no echo reply.
            for (up, down) in [
                (
                    IpAddr::from(Ipv4Addr::LOCALHOST),
                    "192.0.2.99".parse().unwrap(),
                ),
                (
                    std::net::Ipv6Addr::LOCALHOST.into(),
                    "2001:db8::99".parse().unwrap(),
                ),
            ] {
                alive.push(probe(&spec(ProbeKind::Icmp), up).await);
                unreachable.push(probe(&spec(ProbeKind::Icmp), down).await);
            }
            (alive, unreachable)
        })
    });
    assert!(alive.iter().all(|a| a.ok), "{alive:?}");
    assert!(unreachable.iter().all(|u| !u.ok), "{unreachable:?}");
}

#[tokio::test]
async fn udp_expects_an_answer() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buffer = [0u8; 64];
        if let Ok((_, from)) = server.recv_from(&mut buffer).await {
            let _ = server.send_to(b"pong", from).await;
        }
    });
    let kind = ProbeKind::Udp {
        port,
        send: b"ping".to_vec(),
        expect: Some(b"pong".to_vec()),
    };
    assert!(probe(&spec(kind), Ipv4Addr::LOCALHOST.into()).await.ok);
}
