//! A backend server the benchmarks can kill at an exact instant.
//!
//! Like the test suite's backend servers it answers every line on a TCP
//! connection, and every UDP datagram, with its name. [`KillableServer::kill`]
//! takes effect at once, as a crashing process would: the listening socket
//! is shut down (new connections are refused from that instant) and no
//! datagram is answered after it. Workers accept on one shared listener and
//! serve a connection each, so a short-connection load does not pay for a
//! thread per connection.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::serving::{Serving, keeps_serving};
use crate::netns::NetNs;

/// How long an idle connection is kept.
const IDLE: Duration = Duration::from_secs(5);
/// How often blocked threads look at the alive flag.
const POLL: Duration = Duration::from_millis(20);

/// Field order matters: the threads are joined before the listener closes.
pub struct KillableServer {
    serving: Serving,
    listener: TcpListener,
}

impl KillableServer {
    /// Serves `name` on TCP `tcp_port` with `workers` connections at a time
    /// and, if given, on UDP `udp_port`, inside `ns`.
    pub fn start(
        ns: &NetNs,
        name: &str,
        tcp_port: u16,
        udp_port: Option<u16>,
        workers: usize,
    ) -> Self {
        let (listener, udp) = ns.run(|| {
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, tcp_port))
                .unwrap_or_else(|e| panic!("{name}: bind tcp {tcp_port}: {e}"));
            let udp = udp_port.map(|port| {
                UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                    .unwrap_or_else(|e| panic!("{name}: bind udp {port}: {e}"))
            });
            (listener, udp)
        });
        let answer: Arc<[u8]> = format!("{name}\n").into_bytes().into();
        let mut serving = Serving::new();
        for _ in 0..workers.max(1) {
            let listener = listener.try_clone().expect("clone the listener");
            let answer = answer.clone();
            serving.spawn(move |alive, answered| {
                accept_loop(&listener, &answer, alive, answered);
            });
        }
        if let Some(udp) = udp {
            serving.spawn(move |alive, answered| {
                serve_udp(&udp, &answer[..answer.len() - 1], alive, answered);
            });
        }
        Self { serving, listener }
    }

    /// Stops serving now: new connections are refused and datagrams
    /// unanswered from this instant.
    pub fn kill(&self) {
        self.serving.stop();
        // SAFETY: shutting down our own listening socket; blocked accept()s
        // return an error and the kernel stops accepting connections.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Lines and datagrams answered so far.
    pub fn answered(&self) -> u64 {
        self.serving.answered()
    }
}

impl Drop for KillableServer {
    /// Killed first; then the fields' drops join the threads.
    fn drop(&mut self) {
        self.kill();
    }
}

fn accept_loop(listener: &TcpListener, answer: &[u8], alive: &AtomicBool, answered: &AtomicU64) {
    let started = Instant::now();
    while keeps_serving(alive, started) {
        match listener.accept() {
            Ok((stream, _)) => serve_connection(stream, answer, alive, answered),
            // After kill() accept fails at once; anything else is transient.
            Err(_) if !alive.load(Ordering::Relaxed) => return,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn serve_connection(
    mut stream: TcpStream,
    answer: &[u8],
    alive: &AtomicBool,
    answered: &AtomicU64,
) {
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 512];
    let mut idle_since = Instant::now();
    while alive.load(Ordering::Relaxed) && idle_since.elapsed() < IDLE {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                idle_since = Instant::now();
                for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
                    if stream.write_all(answer).is_err() {
                        return;
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
    // A killed server resets its connections, as the kernel does for a
    // process that dies.
    reset_on_close(&stream);
}

/// Makes closing `stream` send a RST, not a FIN (SO_LINGER 0).
pub(crate) fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on our own socket with a correctly sized value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn serve_udp(udp: &UdpSocket, answer: &[u8], alive: &AtomicBool, answered: &AtomicU64) {
    let _ = udp.set_read_timeout(Some(POLL));
    let started = Instant::now();
    let mut buf = [0u8; 512];
    while keeps_serving(alive, started) {
        if let Ok((_, from)) = udp.recv_from(&mut buf)
            && alive.load(Ordering::Relaxed)
            && udp.send_to(answer, from).is_ok()
        {
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
