//! HTTP probes: a GET, its status and optionally a body substring, read no
//! further than the response says (keep-alive backends are healthy).

use std::net::IpAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{ProbeError, Step, tcp::tcp};

pub(super) async fn http(
    address: IpAddr,
    port: u16,
    path: &str,
    status: &std::ops::RangeInclusive<u16>,
    body: Option<&str>,
    max_bytes: usize,
) -> Result<(), ProbeError> {
    let mut stream = tcp(address, port).await?;
    let host = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: failover-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::io(Step::Send))?;
    let response = read_response(&mut stream, max_bytes, body.is_some()).await?;
    let text = String::from_utf8_lossy(&response);
    let code = parse_status(&text).ok_or(ProbeError::NoStatusLine)?;
    if !status.contains(&code) {
        return Err(ProbeError::Status {
            code,
            low: *status.start(),
            high: *status.end(),
        });
    }
    if let Some(expected) = body {
        let body_text = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if !body_text.contains(expected) {
            return Err(ProbeError::BodyMismatch(expected.to_owned()));
        }
    }
    Ok(())
}

/// Reads an HTTP response, at most `max_bytes`: the head, and the body only
/// when it is needed, up to its `Content-Length` (or the end of a chunked
/// body, or EOF without either). A backend that keeps the connection open
/// despite `Connection: close` is not mistaken for a dead one.
pub(super) async fn read_response(
    stream: &mut TcpStream,
    max_bytes: usize,
    need_body: bool,
) -> Result<Vec<u8>, ProbeError> {
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
            .map_err(ProbeError::io(Step::Receive))?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n.min(max_bytes - response.len())]);
    }
    Ok(response)
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
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
