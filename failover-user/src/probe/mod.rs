//! Health probes. Each runs under one deadline (the probe timeout) covering
//! connect, send and receive, and reads at most `max_response_bytes`, so a
//! stuck or hostile backend costs at most one timeout and bounded memory.

mod error;
mod http;
mod icmp;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;

pub use error::{ProbeError, Step};
pub use http::parse_status;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::time::timeout;

use crate::config::{ProbeKind, ProbeSpec};

/// One probe's result.
#[derive(Clone, Debug)]
pub struct ProbeOutcome {
    pub ok: bool,
    pub latency: Duration,
    /// Why it failed.
    pub error: Option<ProbeError>,
    pub at: Instant,
}

/// Runs one probe of `spec` against `address`.
pub async fn probe(spec: &ProbeSpec, address: IpAddr) -> ProbeOutcome {
    let started = Instant::now();
    let result = match timeout(spec.timeout, attempt(spec, address)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::TimedOut(spec.timeout)),
    };
    ProbeOutcome {
        ok: result.is_ok(),
        latency: started.elapsed(),
        error: result.err(),
        at: started,
    }
}

async fn attempt(spec: &ProbeSpec, address: IpAddr) -> Result<(), ProbeError> {
    match &spec.kind {
        ProbeKind::Tcp { port } => tcp::tcp(address, *port).await.map(tcp::close_with_reset),
        ProbeKind::Http {
            port,
            path,
            status,
            body,
        } => {
            http::http(
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
            udp::udp(
                address,
                *port,
                send,
                expect.as_deref(),
                spec.max_response_bytes,
            )
            .await
        }
        ProbeKind::Icmp => icmp::icmp(address, spec.timeout).await,
        ProbeKind::Exec { command, port } => {
            let args = crate::util::process::substitute(command, address, *port);
            // The probe's timeout drops this future first; the limit here
            // is a backstop. Either way the program's group is killed.
            crate::util::process::run(&args, &[], None, spec.timeout)
                .await
                .map_err(|err| ProbeError::Exec(Arc::new(err)))
        }
    }
}

/// The socket address a TCP/HTTP/UDP probe of `kind` targets, for logs.
pub fn target(kind: &ProbeKind, address: IpAddr) -> String {
    match kind {
        ProbeKind::Tcp { port } | ProbeKind::Http { port, .. } | ProbeKind::Udp { port, .. } => {
            SocketAddr::from((address, *port)).to_string()
        }
        ProbeKind::Icmp | ProbeKind::Exec { .. } => address.to_string(),
    }
}
