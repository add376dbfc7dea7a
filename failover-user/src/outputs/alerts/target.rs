//! An alert's target as parsed, one delivery attempt to it, and why an
//! attempt failed.

use std::{io, net::SocketAddr, time::Duration};

use tokio::time::timeout;

use super::{
    Delivery,
    webhook::{UrlError, WebhookUrl, post},
};
use crate::config::AlertTarget;

/// A parsed alert target.
pub(super) enum Target {
    Webhook(WebhookUrl),
    Exec { program: String, args: Vec<String> },
}

impl Target {
    pub(super) fn new(target: &AlertTarget) -> Result<Self, UrlError> {
        Ok(match target {
            AlertTarget::Webhook { url } => Self::Webhook(WebhookUrl::parse(url)?),
            AlertTarget::Exec { command } => {
                let (program, args) = command.split_first().ok_or(UrlError::NoProgram)?;
                Self::Exec {
                    program: program.clone(),
                    args: args.to_vec(),
                }
            }
        })
    }

    /// One attempt, bounded by `limit`.
    pub(super) async fn attempt(
        &self,
        delivery: &Delivery,
        limit: Duration,
    ) -> Result<(), DeliveryError> {
        match self {
            Self::Webhook(url) => timeout(limit, post(url, &delivery.json))
                .await
                .unwrap_or(Err(DeliveryError::TimedOut { after: limit })),
            Self::Exec { program, args } => exec(program, args, delivery, limit).await,
        }
    }
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("resolving {host}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("connecting to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("sending the request")]
    Send(#[source] io::Error),
    #[error("reading the response")]
    Receive(#[source] io::Error),
    #[error("no HTTP status line in the response: {start:?}")]
    BadResponse { start: String },
    #[error("HTTP status {status}")]
    Status { status: u16 },
    #[error("timed out after {after:?}")]
    TimedOut { after: Duration },
    #[error(transparent)]
    Exec(#[from] crate::util::process::RunError),
}

/// Runs the command with the event JSON on stdin (and the kind, service and
/// backend in `FAILOVER_EVENT_*`); success is exit 0. At the time limit its
/// whole process group is killed, so helpers it started go too.
pub(super) async fn exec(
    program: &str,
    args: &[String],
    delivery: &Delivery,
    limit: Duration,
) -> Result<(), DeliveryError> {
    let command: Vec<String> = std::iter::once(program.to_owned())
        .chain(args.iter().cloned())
        .collect();
    let env = [
        ("FAILOVER_EVENT_KIND", delivery.kind.name()),
        (
            "FAILOVER_EVENT_SERVICE",
            delivery.service.as_deref().unwrap_or(""),
        ),
        (
            "FAILOVER_EVENT_BACKEND",
            delivery.backend.as_deref().unwrap_or(""),
        ),
    ];
    crate::util::process::run(&command, &env, Some(delivery.json.as_bytes()), limit).await?;
    Ok(())
}
