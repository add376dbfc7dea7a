//! The endpoint's HTTP: one request per connection, its head read under a
//! size limit and a deadline, `GET`/`HEAD /metrics` answered.

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
}

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
                Some((_, path)) if path != "/metrics" => {
                    Response::text(404, "Not Found", "not found; try /metrics\n")
                }
                Some(("GET", _)) => Response::metrics(self.scrape().await, false),
                Some(("HEAD", _)) => Response::metrics(self.scrape().await, true),
                Some(_) => Response::text(405, "Method Not Allowed", "use GET\n"),
            },
        };
        stream.write_all(&response.into_bytes()).await?;
        stream.shutdown().await
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

    pub(super) fn metrics(body: String, head_only: bool) -> Self {
        Self {
            status: 200,
            reason: "OK",
            content_type: CONTENT_TYPE,
            body,
            head_only,
        }
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
