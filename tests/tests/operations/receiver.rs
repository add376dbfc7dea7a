//! The webhook's receiving end: an HTTP server in the lb namespace that
//! records every request.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use failover_tests::agent_lab::AgentLab;

/// Every load thread and receiver gives up after this, whatever the test does.
const MAX_LIFETIME: Duration = Duration::from_secs(120);

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hooked {
    pub head: String,
    pub body: String,
}

/// An HTTP receiver on 127.0.0.1 inside the lb namespace answering 204.
pub struct HookReceiver {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Hooked>>>,
    thread: Option<JoinHandle<()>>,
}

impl HookReceiver {
    pub fn start(lab: &AgentLab, port: u16) -> Self {
        let listener = lab
            .lb
            .run(|| TcpListener::bind((Ipv4Addr::LOCALHOST, port)))
            .expect("bind the webhook receiver in the lb namespace");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, got) = (stop.clone(), got.clone());
            std::thread::Builder::new()
                .name("webhook".into())
                .spawn(move || {
                    let begun = Instant::now();
                    while !stop.load(Ordering::Relaxed) && begun.elapsed() < MAX_LIFETIME {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                if let Some(hooked) = receive(stream) {
                                    got.lock().unwrap().push(hooked);
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                })
                .expect("spawn the webhook receiver")
        };
        Self {
            stop,
            got,
            thread: Some(thread),
        }
    }

    pub fn got(&self) -> Vec<Hooked> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (head and Content-Length body) and answers 204.
fn receive(mut stream: TcpStream) -> Option<Hooked> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if data.len() > 64 * 1024 {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while data.len() < head_end + length && data.len() < 1024 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let body_end = (head_end + length).min(data.len());
    Some(Hooked {
        head,
        body: String::from_utf8_lossy(&data[head_end..body_end]).into_owned(),
    })
}
