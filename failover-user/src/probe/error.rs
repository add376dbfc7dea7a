//! Why a probe failed, typed: the agent logs it with its causes and tests
//! match on the kind instead of on words.

use std::{io, sync::Arc, time::Duration};

use crate::util::process::RunError;

/// The step of a probe an I/O error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Bind,
    Connect,
    Send,
    Receive,
    IcmpSocket,
    IcmpTask,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bind => "bind",
            Self::Connect => "connect",
            Self::Send => "send",
            Self::Receive => "receive",
            Self::IcmpSocket => "icmp socket",
            Self::IcmpTask => "icmp task",
        })
    }
}

/// One probe's failure. Cheap to clone (the health evidence keeps the last
/// few); the I/O error or the program's failure is its source.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error("{step}")]
    Io {
        step: Step,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("no HTTP status line in the response")]
    NoStatusLine,
    #[error("status {code} outside {low}-{high}")]
    Status { code: u16, low: u16, high: u16 },
    #[error("body does not contain {0:?}")]
    BodyMismatch(String),
    #[error("answer does not contain {0:?}")]
    AnswerMismatch(String),
    #[error("no echo reply")]
    NoEchoReply,
    #[error("exec probe")]
    Exec(#[source] Arc<RunError>),
}

impl ProbeError {
    /// An I/O error in `step`, for `map_err`.
    pub(super) fn io(step: Step) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io {
            step,
            source: Arc::new(source),
        }
    }
}
