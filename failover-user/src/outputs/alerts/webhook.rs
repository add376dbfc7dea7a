//! Webhooks: `http://` URLs, and one POST of an event's JSON.

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use super::{MAX_STATUS_LINE, target::DeliveryError};

/// `http://host[:port][/path]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct WebhookUrl {
    /// Name or address, without IPv6 brackets.
    pub(super) host: String,
    pub(super) port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub(super) authority: String,
    /// Path and query, `/` when absent.
    pub(super) path: String,
}

/// A webhook URL or command the alert cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{url}: only http:// webhooks are supported")]
    NotHttp { url: String },
    #[error("{url}: no host")]
    NoHost { url: String },
    #[error("{url}: bad port")]
    BadPort { url: String },
    #[error("{url}: user information in the URL is not supported")]
    UserInfo { url: String },
    #[error("exec alert without a program")]
    NoProgram,
}

impl WebhookUrl {
    pub(super) fn parse(url: &str) -> Result<Self, UrlError> {
        let err = |make: fn(String) -> UrlError| make(url.to_owned());
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| err(|url| UrlError::NotHttp { url }))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let path = path.split('#').next().unwrap_or_default();
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if authority.contains('@') {
            return Err(err(|url| UrlError::UserInfo { url }));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| err(|url| UrlError::NoHost { url }))?;
            match after {
                "" => (host, None),
                after => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| err(|url| UrlError::BadPort { url }))?,
                    ),
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err(|url| UrlError::NoHost { url }));
        }
        let port = match port {
            None => 80,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| err(|url| UrlError::BadPort { url }))?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path,
        })
    }
}

/// POSTs `json`; success is a 2xx status line.
pub(super) async fn post(url: &WebhookUrl, json: &str) -> Result<(), DeliveryError> {
    let addrs = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|source| DeliveryError::Resolve {
            host: url.host.clone(),
            source,
        })?;
    let mut failure = DeliveryError::NoAddress {
        host: url.host.clone(),
    };
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(source) => failure = DeliveryError::Connect { addr, source },
        }
    }
    let mut stream = stream.ok_or(failure)?;

    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: failover/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION"),
        json.len(),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(DeliveryError::Send)?;

    let mut head = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(DeliveryError::Receive)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    match status(&head) {
        Some(status) if (200..300).contains(&status) => Ok(()),
        Some(status) => Err(DeliveryError::Status { status }),
        None => Err(DeliveryError::BadResponse {
            start: String::from_utf8_lossy(&head[..head.len().min(64)]).into_owned(),
        }),
    }
}

/// The status code of `HTTP/1.x NNN ...`.
pub(super) fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}
