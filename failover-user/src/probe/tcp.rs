//! TCP connect probes.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::net::TcpStream;

use super::{ProbeError, Step};

/// Ends a connect probe with a reset, as HAProxy does: no FIN exchange and
/// no TIME_WAIT socket per probe (at thousands of probes a second those
/// cost the host CPU and local ports).
pub(super) fn close_with_reset(stream: TcpStream) {
    // Deprecated because a non-zero linger blocks the thread on drop; zero
    // never blocks: the kernel sends the reset at once.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

pub(super) async fn tcp(address: IpAddr, port: u16) -> Result<TcpStream, ProbeError> {
    TcpStream::connect(SocketAddr::new(address, port))
        .await
        .map_err(ProbeError::io(Step::Connect))
}
