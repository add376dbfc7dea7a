//! Server threads of the benchmarks' own backends: they serve while a flag
//! says so, count what they answer, and are joined when their [`Serving`]
//! is dropped; none outlives [`MAX_LIFETIME`], whatever the benchmark does.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// No server thread outlives this.
pub const MAX_LIFETIME: Duration = Duration::from_secs(900);

/// A server's threads, the flag they serve by and their count of answers.
pub struct Serving {
    alive: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Serving {
    pub fn new() -> Self {
        Self {
            alive: Arc::new(AtomicBool::new(true)),
            answered: Arc::new(AtomicU64::new(0)),
            threads: Vec::new(),
        }
    }

    /// Runs `serve` on a thread of its own, given the flag and the count.
    pub fn spawn(&mut self, serve: impl FnOnce(&AtomicBool, &AtomicU64) + Send + 'static) {
        let (alive, answered) = (self.alive.clone(), self.answered.clone());
        self.threads
            .push(std::thread::spawn(move || serve(&alive, &answered)));
    }

    /// Answers counted so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Lowers the flag: the threads stop serving.
    pub fn stop(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

impl Default for Serving {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Whether a server thread started at `started` goes on serving: its flag
/// is up and it is younger than [`MAX_LIFETIME`].
pub fn keeps_serving(alive: &AtomicBool, started: Instant) -> bool {
    alive.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME
}
