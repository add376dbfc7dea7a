//! A backend that accepts (and at once closes) TCP connections on many
//! ports with one thread: the target of health probes in the control-plane
//! benchmark, where every service probes its own backend port.

use std::{
    net::{Ipv4Addr, TcpListener},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Instant,
};

use super::serving::{Serving, keeps_serving};
use crate::netns::NetNs;

pub struct PortRangeAcceptor {
    serving: Serving,
}

impl PortRangeAcceptor {
    /// Listens on every port of `ports` inside `ns`.
    pub fn start(ns: &NetNs, ports: std::ops::Range<u16>) -> Self {
        let listeners: Vec<TcpListener> = ns.run(|| {
            ports
                .clone()
                .map(|port| {
                    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                        .unwrap_or_else(|e| panic!("bind tcp {port}: {e}"));
                    listener
                        .set_nonblocking(true)
                        .expect("nonblocking listener");
                    listener
                })
                .collect()
        });
        let mut serving = Serving::new();
        serving.spawn(move |alive, accepted| accept_all(&listeners, alive, accepted));
        Self { serving }
    }

    pub fn accepted(&self) -> u64 {
        self.serving.answered()
    }
}

fn accept_all(listeners: &[TcpListener], alive: &AtomicBool, accepted: &AtomicU64) {
    // SAFETY: plain epoll calls on descriptors this function's caller owns
    // for its whole run; the epoll descriptor is closed before returning.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(
        epoll >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    for (i, listener) in listeners.iter().enumerate() {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: as above.
        let rc = unsafe {
            libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, listener.as_raw_fd(), &mut event)
        };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    }
    let started = Instant::now();
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while keeps_serving(alive, started) {
        // SAFETY: as above; `ready` has room for its length.
        let n = unsafe { libc::epoll_wait(epoll, ready.as_mut_ptr(), ready.len() as i32, 20) };
        for event in ready.iter().take(n.max(0) as usize) {
            let listener = &listeners[event.u64 as usize];
            // Closing at once: the probe only needs the handshake.
            while listener.accept().is_ok() {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: closing the epoll descriptor created above.
    unsafe { libc::close(epoll) };
}
