//! What can go wrong on the control socket, typed. The agent answers a bad
//! request with the error and its causes as one line; the CLI prints a
//! failed call with its causes.

use std::{io, path::PathBuf, time::Duration};

use super::PROTOCOL_VERSION;

/// A request line the agent cannot take.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("not a request")]
    NotJson(#[source] serde_json::Error),
    #[error("protocol version {0} is not supported (this agent speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("bad request")]
    Bad(#[source] serde_json::Error),
}

/// A call from the CLI that got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("encoding the request")]
    Encode(#[source] serde_json::Error),
    #[error("connecting to {} (is the agent running?)", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to the agent")]
    Io(#[source] io::Error),
    #[error("the agent's answer is not a response")]
    BadResponse(#[source] serde_json::Error),
    #[error("no answer from the agent within {0:?}")]
    NoAnswer(Duration),
}
