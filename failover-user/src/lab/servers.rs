//! Real TCP and UDP servers for the namespace integration tests.
//!
//! A [`BackendServer`] answers every line on a TCP connection, and every UDP
//! datagram, with its name (`"backend1\n"`), so a client can tell which
//! backend the data path sent it to ([`ask`] is the client's half); a line
//! `big N` gets N bytes of `y` before the name (a download). Its
//! sockets are created inside the backend's namespace (by a thread that
//! joined it, through [`NetNs::run`]); a socket stays in the namespace it was
//! created in, so the threads serving them need not be in any namespace
//! themselves.
//!
//! Everything is bounded: sockets poll with short timeouts and check a
//! shutdown flag, and every thread also gives up after [`MAX_LIFETIME`].
//! `Drop` raises the flag and joins all threads (also on panic), so no thread
//! outlives the test or keeps the process from exiting.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::netns::NetNs;

/// How long a server thread runs at most, whatever the test does.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// How often blocked server threads look at the shutdown flag.
const POLL: Duration = Duration::from_millis(50);
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a server saw, for cross-checks against what clients saw.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub tcp_connections: AtomicUsize,
    pub tcp_lines: AtomicUsize,
    pub udp_datagrams: AtomicUsize,
}

/// A TCP listener on `port` for both families (`[::]`, which takes IPv4 as
/// mapped addresses), or IPv4 only where IPv6 is unavailable.
pub fn bind_tcp_any(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
        .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
}

/// A TCP and a UDP server in one namespace, both answering with `name`.
pub struct BackendServer {
    name: String,
    shutdown: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
    threads: Vec<JoinHandle<()>>,
}

impl BackendServer {
    /// Binds `[::]:tcp_port` (TCP) and `[::]:udp_port` (UDP) inside `ns`,
    /// both families (`0.0.0.0` where IPv6 is unavailable), and starts
    /// serving. Panics if it cannot bind.
    pub fn start(ns: &NetNs, name: &str, tcp_port: u16, udp_port: u16) -> Self {
        let (listener, udp) = ns.run(|| {
            let listener = bind_tcp_any(tcp_port)
                .unwrap_or_else(|e| panic!("{name}: bind tcp {tcp_port}: {e}"));
            let udp = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, udp_port))
                .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, udp_port)))
                .unwrap_or_else(|e| panic!("{name}: bind udp {udp_port}: {e}"));
            (listener, udp)
        });
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        udp.set_read_timeout(Some(POLL)).expect("udp read timeout");
        udp.set_write_timeout(Some(WRITE_TIMEOUT))
            .expect("udp write timeout");

        let shutdown = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ServerStats::default());
        let answer: Arc<[u8]> = format!("{name}\n").into_bytes().into();
        let tcp_thread = {
            let (shutdown, stats, answer) = (shutdown.clone(), stats.clone(), answer.clone());
            std::thread::Builder::new()
                .name(format!("{name}-tcp"))
                .spawn(move || serve_tcp(listener, &answer, &shutdown, &stats))
                .expect("spawn tcp server")
        };
        let udp_thread = {
            let (shutdown, stats) = (shutdown.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("{name}-udp"))
                .spawn(move || serve_udp(udp, &answer[..answer.len() - 1], &shutdown, &stats))
                .expect("spawn udp server")
        };
        Self {
            name: name.to_owned(),
            shutdown,
            stats,
            threads: vec![tcp_thread, udp_thread],
        }
    }

    /// Also answers on `tcp_port` (a second service's backend port: one
    /// endpoint serves one service), inside `ns`; stops with the server.
    pub fn also_on(mut self, ns: &NetNs, tcp_port: u16) -> Self {
        let listener = ns.run(|| {
            bind_tcp_any(tcp_port)
                .unwrap_or_else(|e| panic!("{}: bind tcp {tcp_port}: {e}", self.name))
        });
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let (shutdown, stats) = (self.shutdown.clone(), self.stats.clone());
        let answer: Arc<[u8]> = format!("{}\n", self.name).into_bytes().into();
        let thread = std::thread::Builder::new()
            .name(format!("{}-tcp-{tcp_port}", self.name))
            .spawn(move || serve_tcp(listener, &answer, &shutdown, &stats))
            .expect("spawn tcp server");
        self.threads.push(thread);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

impl Drop for BackendServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The client's half of the exchange: sends one line on `stream` and reads
/// the one-line answer, the name of the backend that answered (without the
/// newline). A connection closed first is `UnexpectedEof`.
pub fn ask(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"hello\n")?;
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    while !line.contains(&b'\n') {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > 1024 {
            return Err(std::io::Error::other("answer too long"));
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

fn stopping(shutdown: &AtomicBool, started: Instant) -> bool {
    shutdown.load(Ordering::Relaxed) || started.elapsed() > MAX_LIFETIME
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Waits up to `timeout` for `fd` to become readable.
fn poll_readable(fd: i32, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    rc > 0
}

/// Accepts connections and serves each on its own thread; joins them all
/// before returning.
fn serve_tcp(
    listener: TcpListener,
    answer: &Arc<[u8]>,
    shutdown: &Arc<AtomicBool>,
    stats: &Arc<ServerStats>,
) {
    let started = Instant::now();
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stopping(shutdown, started) {
        if !poll_readable(listener.as_raw_fd(), POLL) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
                let (answer, shutdown, stats) = (answer.clone(), shutdown.clone(), stats.clone());
                let spawned = std::thread::Builder::new()
                    .name("backend-conn".into())
                    .spawn(move || serve_connection(stream, &answer, &shutdown, &stats, started));
                match spawned {
                    Ok(handle) => connections.push(handle),
                    Err(e) => eprintln!("backend server: cannot spawn a connection thread: {e}"),
                }
                // Finished threads need no join; keep the list short.
                connections.retain(|handle| !handle.is_finished());
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                eprintln!("backend server: accept: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Answers every newline received with `answer`, until EOF, an error, or
/// shutdown.
fn serve_connection(
    mut stream: TcpStream,
    answer: &[u8],
    shutdown: &AtomicBool,
    stats: &ServerStats,
    started: Instant,
) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(POLL)).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = [0u8; 4096];
    // The start of the current line, enough to tell a `big N` request.
    let mut line = Vec::with_capacity(LINE_START);
    while !stopping(shutdown, started) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                for &byte in &buf[..n] {
                    if byte != b'\n' {
                        if line.len() < LINE_START {
                            line.push(byte);
                        }
                        continue;
                    }
                    stats.tcp_lines.fetch_add(1, Ordering::Relaxed);
                    let bulk = big_request(&line).map(|len| vec![b'y'; len]);
                    line.clear();
                    if bulk.is_some_and(|bulk| stream.write_all(&bulk).is_err())
                        || stream.write_all(answer).is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// Bytes of a line kept to recognise a request.
const LINE_START: usize = 32;
/// The most bytes a `big N` request gets.
pub const MAX_BIG: usize = 16 << 20;

/// `big N` (N ≤ [`MAX_BIG`]): the client wants N bytes of `y` before the
/// answer (a large download, for path-MTU tests).
fn big_request(line: &[u8]) -> Option<usize> {
    let len: usize = std::str::from_utf8(line.strip_prefix(b"big ")?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (len <= MAX_BIG).then_some(len)
}

/// Answers every datagram with `answer` (no newline).
fn serve_udp(socket: UdpSocket, answer: &[u8], shutdown: &AtomicBool, stats: &ServerStats) {
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    while !stopping(shutdown, started) {
        match socket.recv_from(&mut buf) {
            Ok((_, peer)) => {
                stats.udp_datagrams.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = socket.send_to(answer, peer) {
                    eprintln!("backend server: udp send to {peer}: {e}");
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                eprintln!("backend server: udp recv: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}
