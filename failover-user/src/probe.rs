//! Health probes. Each runs under one deadline (the probe timeout) covering
//! connect, send and receive, and reads at most `max_response_bytes`, so a
//! stuck or hostile backend costs at most one timeout and bounded memory.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

use crate::{
    config::{ProbeKind, ProbeSpec},
    health::ProbeOutcome,
};

/// Runs one probe of `spec` against `address`.
pub async fn probe(spec: &ProbeSpec, address: Ipv4Addr) -> ProbeOutcome {
    let started = Instant::now();
    let result = match timeout(spec.timeout, attempt(spec, address)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:?}", spec.timeout)),
    };
    ProbeOutcome {
        ok: result.is_ok(),
        latency: started.elapsed(),
        error: result.err(),
        at: started,
    }
}

async fn attempt(spec: &ProbeSpec, address: Ipv4Addr) -> Result<(), String> {
    match &spec.kind {
        ProbeKind::Tcp { port } => tcp(address, *port).await.map(close_with_reset),
        ProbeKind::Http {
            port,
            path,
            status,
            body,
        } => {
            http(
                address,
                *port,
                path,
                status,
                body.as_deref(),
                spec.max_response_bytes,
            )
            .await
        }
        ProbeKind::Udp { port, send, expect } => {
            udp(
                address,
                *port,
                send,
                expect.as_deref(),
                spec.max_response_bytes,
            )
            .await
        }
        ProbeKind::Icmp => icmp(address, spec.timeout).await,
        ProbeKind::Exec { command, port } => {
            let args = crate::process::substitute(command, address, *port);
            // The probe's timeout drops this future first; the limit here
            // is a backstop. Either way the program's group is killed.
            crate::process::run(&args, &[], None, spec.timeout)
                .await
                .map_err(|err| crate::error::chain(&err).to_string())
        }
    }
}

/// Ends a connect probe with a reset, as HAProxy does: no FIN exchange and
/// no TIME_WAIT socket per probe (at thousands of probes a second those
/// cost the host CPU and local ports).
fn close_with_reset(stream: TcpStream) {
    // Deprecated because a non-zero linger blocks the thread on drop; zero
    // never blocks: the kernel sends the reset at once.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn tcp(address: Ipv4Addr, port: u16) -> Result<TcpStream, String> {
    TcpStream::connect(SocketAddrV4::new(address, port))
        .await
        .map_err(|e| format!("connect: {e}"))
}

async fn http(
    address: Ipv4Addr,
    port: u16,
    path: &str,
    status: &std::ops::RangeInclusive<u16>,
    body: Option<&str>,
    max_bytes: usize,
) -> Result<(), String> {
    let mut stream = tcp(address, port).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: failover-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let response = read_response(&mut stream, max_bytes, body.is_some()).await?;
    let text = String::from_utf8_lossy(&response);
    let code =
        parse_status(&text).ok_or_else(|| "no HTTP status line in the response".to_owned())?;
    if !status.contains(&code) {
        return Err(format!(
            "status {code} outside {}-{}",
            status.start(),
            status.end()
        ));
    }
    if let Some(expected) = body {
        let body_text = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if !body_text.contains(expected) {
            return Err(format!("body does not contain {expected:?}"));
        }
    }
    Ok(())
}

/// Reads an HTTP response, at most `max_bytes`: the head, and the body only
/// when it is needed, up to its `Content-Length` (or the end of a chunked
/// body, or EOF without either). A backend that keeps the connection open
/// despite `Connection: close` is not mistaken for a dead one.
async fn read_response(
    stream: &mut TcpStream,
    max_bytes: usize,
    need_body: bool,
) -> Result<Vec<u8>, String> {
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    while response.len() < max_bytes {
        if let Some(head_end) = find(&response, b"\r\n\r\n").map(|i| i + 4) {
            if !need_body {
                break;
            }
            let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            if let Some(length) = header("content-length:").and_then(|v| v.parse::<usize>().ok())
                && response.len() >= head_end + length
            {
                break;
            }
            if header("transfer-encoding:").is_some_and(|v| v.contains("chunked"))
                && find(&response[head_end..], b"0\r\n\r\n").is_some()
            {
                break;
            }
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n.min(max_bytes - response.len())]);
    }
    Ok(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// "HTTP/1.1 200 OK" → 200.
pub fn parse_status(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

async fn udp(
    address: Ipv4Addr,
    port: u16,
    payload: &[u8],
    expect: Option<&[u8]>,
    max_bytes: usize,
) -> Result<(), String> {
    let socket = UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(SocketAddrV4::new(address, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    socket
        .send(payload)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buffer = vec![0u8; max_bytes.clamp(1, 65_536)];
    let n = socket
        .recv(&mut buffer)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    if let Some(expected) = expect
        && !buffer[..n]
            .windows(expected.len().max(1))
            .any(|w| w == expected)
    {
        return Err(format!(
            "answer does not contain {:?}",
            String::from_utf8_lossy(expected)
        ));
    }
    Ok(())
}

/// ICMP echo over a raw socket (root). Runs on the blocking pool with the
/// probe timeout as receive timeout.
async fn icmp(address: Ipv4Addr, limit: Duration) -> Result<(), String> {
    tokio::task::spawn_blocking(move || icmp_blocking(address, limit))
        .await
        .map_err(|e| format!("icmp task: {e}"))?
}

fn icmp_blocking(address: Ipv4Addr, limit: Duration) -> Result<(), String> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static SEQUENCE: AtomicU16 = AtomicU16::new(1);
    let ident = (std::process::id() & 0xffff) as u16;
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);

    // SAFETY: plain socket calls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        );
        if fd < 0 {
            return Err(format!("icmp socket: {}", std::io::Error::last_os_error()));
        }
        let result = icmp_exchange(fd, address, ident, sequence, limit);
        libc::close(fd);
        result
    }
}

unsafe fn icmp_exchange(
    fd: i32,
    address: Ipv4Addr,
    ident: u16,
    sequence: u16,
    limit: Duration,
) -> Result<(), String> {
    let mut request = [0u8; 16];
    request[0] = 8; // echo request
    request[4..6].copy_from_slice(&ident.to_be_bytes());
    request[6..8].copy_from_slice(&sequence.to_be_bytes());
    request[8..16].copy_from_slice(b"failover");
    let check = failover_common::csum::checksum_be(&request, 0);
    request[2..4].copy_from_slice(&check.to_be_bytes());

    let target = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(address.octets()),
        },
        sin_zero: [0; 8],
    };
    let deadline = Instant::now() + limit;
    // SAFETY: valid buffers and lengths.
    unsafe {
        let sent = libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const target).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        );
        if sent < 0 {
            return Err(format!("icmp send: {}", std::io::Error::last_os_error()));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("icmp: no echo reply".into());
            }
            let tv = libc::timeval {
                tv_sec: left.as_secs() as i64,
                tv_usec: i64::from(left.subsec_micros()).max(1),
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            );
            let mut buffer = [0u8; 1500];
            let n = libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0);
            if n < 0 {
                return Err("icmp: no echo reply".into());
            }
            let packet = &buffer[..n as usize];
            // Raw sockets deliver the IP header; skip it.
            let ihl = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
            let Some(reply) = packet.get(ihl..ihl + 8) else {
                continue;
            };
            let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
            if reply[0] == 0
                && from == address
                && reply[4..6] == ident.to_be_bytes()
                && reply[6..8] == sequence.to_be_bytes()
            {
                return Ok(());
            }
        }
    }
}

/// The socket address a TCP/HTTP/UDP probe of `kind` targets, for logs.
pub fn target(kind: &ProbeKind, address: Ipv4Addr) -> String {
    match kind {
        ProbeKind::Tcp { port } | ProbeKind::Http { port, .. } | ProbeKind::Udp { port, .. } => {
            SocketAddr::from((address, *port)).to_string()
        }
        ProbeKind::Icmp | ProbeKind::Exec { .. } => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
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
        let localhost = Ipv4Addr::LOCALHOST;
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
        assert!(!outcome.ok && outcome.error.unwrap().contains("body"));
        let error = serve_once(b"HTTP/1.1 503 Busy\r\n\r\n").await;
        let outcome = probe(&spec(kind(error, None)), localhost).await;
        assert!(!outcome.ok && outcome.error.unwrap().contains("503"));
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
        let localhost = Ipv4Addr::LOCALHOST;
        let kind = |port, body: Option<&str>| ProbeKind::Http {
            port,
            path: "/".into(),
            status: 200..=299,
            body: body.map(Into::into),
        };
        let head_only = serve_keeping_open(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        assert!(probe(&spec(kind(head_only, None)), localhost).await.ok);
        let sized =
            serve_keeping_open(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy").await;
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
        assert!(probe(&spec(kind.clone()), Ipv4Addr::LOCALHOST).await.ok);
        let outcome = probe(&spec(kind), Ipv4Addr::LOCALHOST).await;
        assert!(!outcome.ok && outcome.error.unwrap().contains("pong"));
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
        let outcome = probe(&small, Ipv4Addr::LOCALHOST).await;
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
        let outcome = probe(&spec(kind), Ipv4Addr::LOCALHOST).await;
        assert!(!outcome.ok && outcome.error.unwrap().contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn tcp_refused_fails_and_exec_follows_exit_code() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(
            !probe(&spec(ProbeKind::Tcp { port: closed }), Ipv4Addr::LOCALHOST)
                .await
                .ok
        );
        assert!(
            probe(
                &spec(ProbeKind::Exec {
                    command: vec!["true".into()],
                    port: 1,
                }),
                Ipv4Addr::LOCALHOST
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
                Ipv4Addr::LOCALHOST
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
                let alive = probe(&spec(ProbeKind::Icmp), Ipv4Addr::LOCALHOST).await;
                // No route to TEST-NET-1 in this namespace: no echo reply.
                let unreachable = probe(&spec(ProbeKind::Icmp), Ipv4Addr::new(192, 0, 2, 99)).await;
                (alive, unreachable)
            })
        });
        assert!(alive.ok, "{alive:?}");
        assert!(!unreachable.ok, "{unreachable:?}");
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
        assert!(probe(&spec(kind), Ipv4Addr::LOCALHOST).await.ok);
    }
}
