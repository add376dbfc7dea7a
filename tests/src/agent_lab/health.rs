//! The health endpoint of a lab's backends: a tiny HTTP server the test
//! turns up, down or slow.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use failover::lab::netns::NsFd;

use super::MAX_LIFETIME;
use crate::netns::NetNs;

/// How a [`HealthServer`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Listening; answers `200 OK` at once.
    Up = 0,
    /// Not listening (connections are refused).
    Down = 1,
    /// Listening; answers after [`SLOW_ANSWER`] (beyond the probe timeout).
    Slow = 2,
}

/// How late a [`Health::Slow`] server answers.
pub const SLOW_ANSWER: Duration = Duration::from_millis(200);

/// A tiny HTTP health endpoint in a backend namespace whose behaviour the
/// test switches; [`HealthServer::set`] returns once the server applied it.
pub struct HealthServer {
    wanted: Arc<AtomicU8>,
    applied: Arc<AtomicU8>,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    pub fn start(ns: &NetNs, port: u16) -> Self {
        let wanted = Arc::new(AtomicU8::new(Health::Up as u8));
        let applied = Arc::new(AtomicU8::new(u8::MAX));
        let shutdown = Arc::new(AtomicBool::new(false));
        let ns = ns.open().expect("open the backend netns");
        let thread = {
            let (wanted, applied, shutdown) = (wanted.clone(), applied.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("health".into())
                .spawn(move || serve_health(&ns, port, &wanted, &applied, &shutdown))
                .expect("spawn the health server")
        };
        let server = Self {
            wanted,
            applied,
            shutdown,
            thread: Some(thread),
        };
        server.set(Health::Up);
        server
    }

    /// Switches the behaviour; returns once the server has applied it.
    pub fn set(&self, health: Health) {
        self.wanted.store(health as u8, Ordering::SeqCst);
        let started = Instant::now();
        while self.applied.load(Ordering::SeqCst) != health as u8 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "health server did not switch to {health:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_health(
    ns: &NsFd,
    port: u16,
    wanted: &AtomicU8,
    applied: &AtomicU8,
    shutdown: &Arc<AtomicBool>,
) {
    ns.enter().expect("enter the backend netns");
    let started = Instant::now();
    let slow = Arc::new(AtomicBool::new(false));
    let mut listener: Option<TcpListener> = None;
    let connections: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());
    while !shutdown.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
        let want = wanted.load(Ordering::SeqCst);
        if want != applied.load(Ordering::SeqCst) {
            if want == Health::Down as u8 {
                listener = None;
            } else if listener.is_none() {
                match failover::lab::servers::bind_tcp_any(port) {
                    Ok(l) => {
                        l.set_nonblocking(true).expect("nonblocking listener");
                        listener = Some(l);
                    }
                    Err(e) => {
                        eprintln!("health server: bind {port}: {e}");
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                }
            }
            slow.store(want == Health::Slow as u8, Ordering::SeqCst);
            applied.store(want, Ordering::SeqCst);
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        let mut pfd = libc::pollfd {
            fd: l.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 2) } <= 0 {
            continue;
        }
        if let Ok((stream, _)) = l.accept() {
            let (slow, shutdown) = (slow.clone(), shutdown.clone());
            let handle = std::thread::Builder::new()
                .name("health-conn".into())
                .spawn(move || answer_health(stream, &slow, &shutdown));
            let mut list = connections.lock().unwrap();
            if let Ok(handle) = handle {
                list.push(handle);
            }
            list.retain(|h| !h.is_finished());
        }
    }
    for handle in connections.into_inner().unwrap() {
        let _ = handle.join();
    }
}

/// Reads the request head (bounded), waits if slow, answers 200 and closes.
fn answer_health(mut stream: TcpStream, slow: &AtomicBool, shutdown: &AtomicBool) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .is_err()
    {
        return;
    }
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if slow.load(Ordering::SeqCst) {
        let until = Instant::now() + SLOW_ANSWER;
        while Instant::now() < until && !shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok\n",
    );
}
