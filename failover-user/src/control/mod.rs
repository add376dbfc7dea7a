//! The control API: a root-only Unix socket speaking one JSON object per
//! line, versioned. No network listener: operators on the host (or tools
//! they run there) drive the agent through it.
//!
//! Request:  `{"version":1,"command":"drain","backend":"web/primary","deadline_s":30,"dry_run":false}`
//! Response: `{"version":1,"ok":true,"result":{...}}` or `{"version":1,"ok":false,"error":"..."}`

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

mod error;
mod status;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    time::timeout,
};
use tracing::{info, warn};

pub use error::{CallError, RequestError};
pub use status::{BackendStatus, ServiceStatus, StatusAnswer};

pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line accepted.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What an operator asks. Backends are named `service/backend`, or just
/// `backend` when that name is unique across services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status {},
    Drain {
        backend: String,
        /// After this many seconds, remaining flows are re-picked.
        #[serde(default)]
        deadline_s: Option<f64>,
        #[serde(default)]
        dry_run: bool,
    },
    Undrain {
        backend: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// `to`: the backend that alone takes new flows from now on; `None`
    /// ends the switchover in force (tiers and health decide again).
    Switchover {
        service: String,
        #[serde(default)]
        to: Option<String>,
        #[serde(default)]
        dry_run: bool,
    },
    Failback {
        #[serde(default)]
        service: Option<String>,
        #[serde(default)]
        dry_run: bool,
    },
    Maintenance {
        backend: String,
        on: bool,
        #[serde(default)]
        dry_run: bool,
    },
    Reload {
        #[serde(default)]
        dry_run: bool,
    },
    /// The edge host (`[routing]`): withdraw every VIP, kept across restarts.
    HostDrain {},
    /// Announce again what the host can serve.
    HostUndrain {},
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    version: u32,
    #[serde(flatten)]
    request: Value,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(result: Value) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            ok: true,
            result,
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            ok: false,
            result: Value::Null,
            error: Some(message.into()),
        }
    }
}

/// A request on its way to the decision loop, with where to answer.
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Hands `request` to the decision loop and waits for its answer: the
/// one way in for the control socket and the status page. `None`: the
/// loop is gone (the agent is stopping).
pub async fn ask(calls: &mpsc::Sender<Call>, request: Request) -> Option<Response> {
    let (reply, answer) = oneshot::channel();
    calls.send(Call { request, reply }).await.ok()?;
    answer.await.ok()
}

/// Parses one request line, checking the protocol version.
pub fn parse_request(line: &str) -> Result<Request, RequestError> {
    let envelope: Envelope = serde_json::from_str(line).map_err(RequestError::NotJson)?;
    if envelope.version != PROTOCOL_VERSION {
        return Err(RequestError::Version(envelope.version));
    }
    serde_json::from_value(envelope.request).map_err(RequestError::Bad)
}

/// Binds the socket: refuses if another agent answers on it, replaces a
/// stale one, and makes it root-only (0600; a directory it creates is 0700).
pub async fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        // Only a directory we create is made private; an existing one (say
        // /run) keeps its mode.
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // A stale socket (its agent gone) is replaced; anything else at the
    // path is the operator's and stays.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: not removed; choose another [control] socket",
                    path.display()
                ),
            ));
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another agent is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Created owner-only from the start: no window in which another user
    // could connect before the mode is set.
    // SAFETY: umask(2) has no preconditions; restored right after.
    let old_umask = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old_umask) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Whether the peer of a control connection may drive the agent: root or
/// the agent's own user (the socket's mode already says so; this holds even
/// if someone loosens it).
fn peer_allowed(stream: &UnixStream) -> bool {
    match stream.peer_cred() {
        Ok(cred) => {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            cred.uid() == 0 || cred.uid() == me
        }
        Err(_) => false,
    }
}

/// Serves the control socket until `shutdown` (or the decision loop goes
/// away); connections under way are answered or dropped with the loop.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    calls: mpsc::Sender<Call>,
    shutdown: crate::util::shutdown::Shutdown,
) {
    info!(socket = %path.display(), "control socket ready");
    let shutdown = shutdown.wait();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(cause = %crate::util::chain(&err), "control accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if calls.is_closed() {
            break;
        }
        if !peer_allowed(&stream) {
            warn!(peer = ?stream.peer_cred().ok().map(|c| c.uid()), "control connection from another user refused");
            continue;
        }
        let calls = calls.clone();
        tokio::spawn(async move {
            if let Err(err) = handle(stream, calls).await {
                warn!(cause = %crate::util::chain(&err), "control connection failed");
            }
        });
    }
}

async fn handle(stream: UnixStream, calls: mpsc::Sender<Call>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut line = String::new();
    let response = match timeout(IO_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => Response::error("timed out waiting for the request"),
        Ok(Err(err)) => Response::error(format!("reading the request: {err}")),
        Ok(Ok(_)) if !line.ends_with('\n') => {
            Response::error("request too long or not newline-terminated")
        }
        Ok(Ok(_)) => match parse_request(line.trim_end()) {
            Err(err) => Response::error(crate::util::chain(&err).to_string()),
            Ok(request) => ask(&calls, request)
                .await
                .unwrap_or_else(|| Response::error("the agent is shutting down")),
        },
    };
    let mut text = serde_json::to_string(&response).map_err(io::Error::other)?;
    text.push('\n');
    timeout(IO_TIMEOUT, write.write_all(text.as_bytes()))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the response"))?
}

/// Client side: sends one request and waits for the answer.
pub async fn call(socket: &Path, request: &Request, wait: Duration) -> Result<Response, CallError> {
    let mut payload = serde_json::to_value(request).map_err(CallError::Encode)?;
    payload["version"] = Value::from(PROTOCOL_VERSION);
    let mut line = payload.to_string();
    line.push('\n');
    let exchange = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| CallError::Connect {
                socket: socket.to_owned(),
                source,
            })?;
        let (read, mut write) = stream.into_split();
        write
            .write_all(line.as_bytes())
            .await
            .map_err(CallError::Io)?;
        let mut answer = String::new();
        BufReader::new(read)
            .read_line(&mut answer)
            .await
            .map_err(CallError::Io)?;
        serde_json::from_str::<Response>(&answer).map_err(CallError::BadResponse)
    };
    timeout(wait, exchange)
        .await
        .map_err(|_| CallError::NoAnswer(wait))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_version_and_defaults() {
        assert_eq!(
            parse_request(r#"{"version":1,"command":"status"}"#).unwrap(),
            Request::Status {}
        );
        assert_eq!(
            parse_request(
                r#"{"version":1,"command":"drain","backend":"web/primary","deadline_s":30}"#
            )
            .unwrap(),
            Request::Drain {
                backend: "web/primary".into(),
                deadline_s: Some(30.0),
                dry_run: false
            }
        );
        assert!(matches!(
            parse_request(r#"{"version":2,"command":"status"}"#),
            Err(RequestError::Version(2))
        ));
        assert!(matches!(
            parse_request(r#"{"version":1,"command":"explode"}"#),
            Err(RequestError::Bad(_))
        ));
        assert!(matches!(
            parse_request(r#"{"version":1,"command":"status","extra":1}"#),
            Err(RequestError::Bad(_))
        ));
        assert!(matches!(
            parse_request("not json"),
            Err(RequestError::NotJson(_))
        ));
    }

    #[tokio::test]
    async fn a_regular_file_at_the_socket_path_is_never_removed() {
        let dir = std::env::temp_dir().join(format!("fo-control-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("precious.txt");
        std::fs::write(&path, "the operator's").unwrap();
        let err = bind(&path).await.unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "the operator's");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_call_round_trips_and_the_socket_is_root_only() {
        let dir = std::env::temp_dir().join(format!("fo-control-test-{}", std::process::id()));
        let path = dir.join("control.sock");
        let listener = bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            bind(&path).await.is_err(),
            "a second agent must not take over the socket"
        );
        let (calls_tx, mut calls) = mpsc::channel::<Call>(4);
        let (stop, shutdown) = crate::util::shutdown::channel();
        let server = tokio::spawn(serve(listener, path.clone(), calls_tx, shutdown));
        let agent = tokio::spawn(async move {
            let call = calls.recv().await.unwrap();
            assert_eq!(call.request, Request::Status {});
            let _ = call
                .reply
                .send(Response::ok(serde_json::json!({"services": []})));
        });
        let response = call(&path, &Request::Status {}, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(response.ok);
        assert_eq!(response.result["services"], serde_json::json!([]));
        agent.await.unwrap();
        stop.fire();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server ends at the shutdown signal")
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
