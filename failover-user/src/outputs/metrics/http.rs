//! The endpoint's HTTP: one request per connection, its head read under a
//! size limit and a deadline; `GET`/`HEAD` of `/metrics`, `/` (the status
//! page) and `/status.json` answered.

use std::{io, path::PathBuf};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Mutex,
    time::timeout,
};
use tracing::{debug, warn};

use super::{CONTENT_TYPE, DatapathCounters, MAX_REQUEST_BYTES, REQUEST_TIMEOUT, render::render};
use crate::outputs::telemetry::Telemetry;

pub(super) struct Scraper {
    pub(super) telemetry: Telemetry,
    pub(super) pin_dir: PathBuf,
    /// One map walk at a time, however many scrapes arrive together.
    pub(super) datapath_read: Mutex<()>,
    pub(super) status: super::StatusSource,
}

/// The status page: self-contained (inline style and script, no external
/// asset), refreshed from `/status.json`.
const STATUS_PAGE: &str = include_str!("../page/status.html");
/// How long `/status.json` waits for the decision loop.
const STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Scraper {
    pub(super) async fn handle(&self, mut stream: TcpStream) -> io::Result<()> {
        let response = match timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
            Err(_) => Response::text(408, "Request Timeout", "request timed out\n"),
            Ok(Err(HeadError::TooLarge)) => Response::text(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            ),
            Ok(Err(HeadError::Closed)) => return Ok(()),
            Ok(Err(HeadError::Io(err))) => return Err(err),
            Ok(Ok(head)) => match parse_request_line(&head) {
                None => Response::text(400, "Bad Request", "bad request\n"),
                Some((method, _)) if method != "GET" && method != "HEAD" => {
                    Response::text(405, "Method Not Allowed", "use GET\n")
                }
                Some((method, path)) => {
                    let response = match path {
                        "/metrics" => Response::metrics(self.scrape().await),
                        "/" | "/index.html" => Response::page(STATUS_PAGE),
                        "/status.json" => self.status().await,
                        _ => Response::text(
                            404,
                            "Not Found",
                            "not found; try / (the status page), /status.json or /metrics\n",
                        ),
                    };
                    response.head_only(method == "HEAD")
                }
            },
        };
        stream.write_all(&response.into_bytes()).await?;
        stream.shutdown().await
    }

    /// The decision loop's status answer, as the control socket gives it.
    async fn status(&self) -> Response {
        let Some(calls) = &self.status else {
            return Response::text(503, "Service Unavailable", "no agent answers here\n");
        };
        let asked = crate::control::ask(calls, crate::control::Request::Status {});
        match timeout(STATUS_WAIT, asked).await {
            Ok(Some(response)) if response.ok => Response::json(response.result.to_string()),
            Ok(Some(response)) => Response::text(
                500,
                "Internal Server Error",
                &format!("{}\n", response.error.unwrap_or_default()),
            ),
            Ok(None) => Response::text(503, "Service Unavailable", "the agent is stopping\n"),
            Err(_) => Response::text(
                503,
                "Service Unavailable",
                "the agent's decision loop did not answer within 3 s\n",
            ),
        }
    }

    pub(super) async fn scrape(&self) -> String {
        let snapshot = self.telemetry.snapshot();
        let datapath = {
            let _one_at_a_time = self.datapath_read.lock().await;
            let pin_dir = self.pin_dir.clone();
            let wanted = snapshot.clone();
            tokio::task::spawn_blocking(move || DatapathCounters::read(&pin_dir, &wanted)).await
        };
        let datapath = match datapath {
            Ok(Ok(counters)) => Some(counters),
            Ok(Err(err)) => {
                debug!(pin_dir = %self.pin_dir.display(), cause = %crate::util::chain(&err), "data-path counters unavailable");
                None
            }
            Err(err) => {
                warn!(cause = %crate::util::chain(&err), "reading data-path counters panicked");
                None
            }
        };
        render(&snapshot, datapath.as_ref())
    }
}

pub(super) enum HeadError {
    TooLarge,
    Closed,
    Io(io::Error),
}

/// Reads up to the blank line ending the request head, at most
/// [`MAX_REQUEST_BYTES`]. A request body, if any, is ignored.
pub(super) async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&head[scan_from..], b"\r\n\r\n") {
            head.truncate(scan_from + end);
            return Ok(head);
        }
        if head.len() >= MAX_REQUEST_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `(method, path without query)` of an HTTP/1.x request line.
pub(super) fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Some((method, path))
}

pub(super) struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    pub(super) fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
        }
    }

    pub(super) fn metrics(body: String) -> Self {
        Self::ok(CONTENT_TYPE, body)
    }

    fn page(body: &str) -> Self {
        Self::ok("text/html; charset=utf-8", body.to_owned())
    }

    fn json(body: String) -> Self {
        Self::ok("application/json", body)
    }

    fn ok(content_type: &'static str, body: String) -> Self {
        Self {
            status: 200,
            reason: "OK",
            content_type,
            body,
            head_only: false,
        }
    }

    pub(super) fn head_only(mut self, head_only: bool) -> Self {
        self.head_only = head_only;
        self
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        // Read-only pages of live state: never cached, never framed by
        // another site, no script or style from anywhere else.
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n\
             Content-Security-Policy: default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}
