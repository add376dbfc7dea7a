//! Benign traffic that looks like failure to a careless detector: clients
//! aborting (RST after an answer, or before the handshake completes),
//! servers resetting idle connections, a refused port on another service,
//! and ICMP errors from hosts that are not the backend they name. Each kind
//! runs on a thread of its own in its namespace, paced and bounded by a
//! deadline; [`Noise::finish`] says how many of each were made.

use std::{
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use failover::lab::{load, netns::NsFd, topology};

use crate::{
    agent_lab::{BACKEND_PORT, PRIMARY, STANDBY, VIP, web},
    bench::killable::reset_on_close,
    netns::NetNs,
    packet::{Frame, ICMP_DEST_UNREACHABLE, ICMP_PORT_UNREACHABLE, TCP_SYN},
};

/// The refused service's port on the VIP (nothing listens behind it).
pub(super) const REFUSED_PORT: u16 = 82;
pub(super) const REFUSED_BACKEND_PORT: u16 = 8082;
/// A VIP-range address no client has: forged ICMP errors name it as the
/// client, so they are routed through the edge host.
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
/// A host that is not a backend, in the backends' range.
const OTHER_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
/// How many idle connections wait for the server's reset at once.
const IDLE_CONNECTIONS: usize = 24;

/// What the noise made, by kind.
#[derive(Clone, Debug, Default)]
pub(super) struct NoiseCounts {
    /// Connections the client reset after its answer.
    pub(super) client_resets: u64,
    /// Connections the client dropped before the handshake completed.
    pub(super) handshake_aborts: u64,
    /// Idle connections the server reset (seen by the client).
    pub(super) server_resets: u64,
    /// Connections refused on the other service.
    pub(super) refused: u64,
    /// ICMP errors sent from hosts that are not the backend they name.
    pub(super) icmp_errors: u64,
}

pub(super) struct Noise {
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, Arc<AtomicU64>, JoinHandle<()>)>,
}

impl NoiseCounts {
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "client_resets": self.client_resets,
            "handshake_aborts": self.handshake_aborts,
            "server_resets": self.server_resets,
            "refused": self.refused,
            "icmp_errors": self.icmp_errors,
        })
    }
}

impl Noise {
    /// Starts every kind, for at most `lifetime`.
    pub(super) fn start(client: &NetNs, standby: &NetNs, lifetime: Duration) -> Self {
        let mut noise = Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let deadline = Instant::now() + lifetime;
        noise.spawn("client_resets", client, deadline, client_resets);
        noise.spawn("handshake_aborts", client, deadline, handshake_aborts);
        noise.spawn("server_resets", client, deadline, server_resets);
        noise.spawn("refused", client, deadline, refused);
        noise.spawn(
            "icmp_errors",
            client,
            deadline,
            forged_icmp_from_the_client_side,
        );
        noise.spawn("icmp_errors", standby, deadline, icmp_from_another_backend);
        noise
    }

    fn spawn(
        &mut self,
        kind: &'static str,
        ns: &NetNs,
        deadline: Instant,
        make: fn(&dyn Fn() -> bool, &AtomicU64),
    ) {
        let fd: NsFd = ns.open().expect("open the namespace");
        let (stop, count) = (self.stop.clone(), Arc::new(AtomicU64::new(0)));
        let made = count.clone();
        let thread = std::thread::spawn(move || {
            fd.enter().expect("enter the namespace");
            let going = || !stop.load(Ordering::Relaxed) && Instant::now() < deadline;
            make(&going, &made);
        });
        self.threads.push((kind, count, thread));
    }

    /// Stops every thread and counts what they made.
    pub(super) fn finish(mut self) -> NoiseCounts {
        self.stop.store(true, Ordering::Relaxed);
        let mut counts = NoiseCounts::default();
        for (kind, count, thread) in self.threads.drain(..) {
            let _ = thread.join();
            let n = count.load(Ordering::Relaxed);
            match kind {
                "client_resets" => counts.client_resets += n,
                "handshake_aborts" => counts.handshake_aborts += n,
                "server_resets" => counts.server_resets += n,
                "refused" => counts.refused += n,
                _ => counts.icmp_errors += n,
            }
        }
        counts
    }
}

impl Drop for Noise {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, _, thread) in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A connection to the web service that asked once and got its answer.
fn asked_once() -> Option<TcpStream> {
    let stream = load::connect(web(), Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut line = String::new();
    (&stream).write_all(b"x\n").ok()?;
    BufReader::new(&stream).read_line(&mut line).ok()?;
    Some(stream)
}

fn paced(going: &dyn Fn() -> bool, every: Duration, mut once: impl FnMut()) {
    while going() {
        let next = Instant::now() + every;
        once();
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Every 20 ms: a request answered, then the client resets the connection.
fn client_resets(going: &dyn Fn() -> bool, made: &AtomicU64) {
    paced(going, Duration::from_millis(20), || {
        if let Some(stream) = asked_once() {
            reset_on_close(&stream);
            made.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Every 50 ms: a connect given up at once (the client's kernel answers
/// the backend's SYN-ACK with a RST).
fn handshake_aborts(going: &dyn Fn() -> bool, made: &AtomicU64) {
    paced(going, Duration::from_millis(50), || {
        // SAFETY: a socket of our own, closed before returning.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            if fd < 0 {
                return;
            }
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: web().port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(VIP).to_be(),
                },
                sin_zero: [0; 8],
            };
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            libc::close(fd);
        }
        made.fetch_add(1, Ordering::Relaxed);
    });
}

/// Every 250 ms: a connection asked once and left idle until the server
/// resets it (the lab's servers reset a connection idle for 5 s).
fn server_resets(going: &dyn Fn() -> bool, made: &AtomicU64) {
    let mut idle: Vec<TcpStream> = Vec::new();
    paced(going, Duration::from_millis(250), || {
        idle.retain(|stream| {
            let mut byte = [0u8; 1];
            match (&*stream).read(&mut byte) {
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    made.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                _ => false,
            }
        });
        if idle.len() >= IDLE_CONNECTIONS {
            return;
        }
        if let Some(stream) = asked_once()
            && stream.set_nonblocking(true).is_ok()
        {
            idle.push(stream);
        }
    });
}

/// Every 50 ms: a connection to the service whose port nobody serves.
fn refused(going: &dyn Fn() -> bool, made: &AtomicU64) {
    let target = SocketAddr::from((VIP, REFUSED_PORT));
    paced(going, Duration::from_millis(50), || {
        if let Err(e) = load::connect(target, Duration::from_millis(100))
            && e.kind() == ErrorKind::ConnectionRefused
        {
            made.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// A raw IPv4 socket (the caller writes the IP header).
fn raw_socket() -> Option<i32> {
    // SAFETY: plain socket creation; the caller closes it.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    (fd >= 0).then_some(fd)
}

fn send_raw(fd: i32, packet: &[u8], dst: Ipv4Addr) -> bool {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sending a buffer we own to an address we own.
    let sent = unsafe {
        libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    sent == packet.len() as isize
}

/// A port unreachable from `from` to `client` about a SYN `client` sent
/// to the primary's service port.
fn unreachable_about_primary(from: Ipv4Addr, client: Ipv4Addr, port: u16) -> Vec<u8> {
    let syn = Frame::tcp(
        (client, port),
        (topology::backend_addr(PRIMARY), BACKEND_PORT),
        TCP_SYN,
    );
    Frame::icmp_error(
        from,
        client,
        (ICMP_DEST_UNREACHABLE, ICMP_PORT_UNREACHABLE, 0),
        &syn,
        8,
    )
    .ip_packet()
}

/// Every 10 ms, from the client's side: an ICMP error naming the primary
/// as unreachable, alternately forged with the primary's address and sent
/// by a host that is not a backend.
fn forged_icmp_from_the_client_side(going: &dyn Fn() -> bool, made: &AtomicU64) {
    let Some(fd) = raw_socket() else { return };
    let mut port = 20_000u16;
    paced(going, Duration::from_millis(10), || {
        port = port.wrapping_add(1).max(20_000);
        let from = if port.is_multiple_of(2) {
            topology::backend_addr(PRIMARY)
        } else {
            OTHER_HOST
        };
        if send_raw(
            fd,
            &unreachable_about_primary(from, ELSEWHERE, port),
            ELSEWHERE,
        ) {
            made.fetch_add(1, Ordering::Relaxed);
        }
    });
    // SAFETY: our own socket.
    unsafe { libc::close(fd) };
}

/// Every 10 ms, from the standby's host: an ICMP error to the client naming
/// the primary as unreachable (the standby is not on the primary's path).
fn icmp_from_another_backend(going: &dyn Fn() -> bool, made: &AtomicU64) {
    let Some(fd) = raw_socket() else { return };
    let client = topology::CLIENT_ADDR;
    let mut port = 40_000u16;
    paced(going, Duration::from_millis(10), || {
        port = port.wrapping_add(1).max(40_000);
        let packet = unreachable_about_primary(topology::backend_addr(STANDBY), client, port);
        if send_raw(fd, &packet, client) {
            made.fetch_add(1, Ordering::Relaxed);
        }
    });
    // SAFETY: our own socket.
    unsafe { libc::close(fd) };
}
