//! UDP probes: send a payload, expect an answer (containing `expect`).

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

use super::{ProbeError, Step};

pub(super) async fn udp(
    address: IpAddr,
    port: u16,
    payload: &[u8],
    expect: Option<&[u8]>,
    max_bytes: usize,
) -> Result<(), ProbeError> {
    let any = if address.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any)
        .await
        .map_err(ProbeError::io(Step::Bind))?;
    socket
        .connect(SocketAddr::new(address, port))
        .await
        .map_err(ProbeError::io(Step::Connect))?;
    socket
        .send(payload)
        .await
        .map_err(ProbeError::io(Step::Send))?;
    let mut buffer = vec![0u8; max_bytes.clamp(1, 65_536)];
    let n = socket
        .recv(&mut buffer)
        .await
        .map_err(ProbeError::io(Step::Receive))?;
    if let Some(expected) = expect
        && !buffer[..n]
            .windows(expected.len().max(1))
            .any(|w| w == expected)
    {
        return Err(ProbeError::AnswerMismatch(
            String::from_utf8_lossy(expected).into_owned(),
        ));
    }
    Ok(())
}
