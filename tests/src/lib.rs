//! Test support for failover: packet builders, namespace and pin guards, the
//! BPF_PROG_TEST_RUN lab the data-path fixtures run in, the backend servers
//! of the namespace integration tests, and the typed builder of every agent
//! configuration the tests and benches write ([`config`]).

pub use failover::lab::{load, netns, servers};

pub mod agent_lab;
pub mod bench;
pub mod config;
pub mod fixture;
pub mod fleet_lab;
pub mod flood;
pub mod forwarding_lab;
pub mod fuzz;
pub mod lab;
pub mod metrics;
pub mod packet;
pub mod pins;
pub mod prometheus;
pub mod rng;
pub mod status;

/// Runs the current thread on one CPU: the data path keeps some state per
/// CPU (the flood guard's window, the client-hop cache, rate limits).
pub fn pin_to_one_cpu() {
    pin_thread_to_cpu0(0);
}

/// Runs every thread of process `pid` on the CPU [`pin_to_one_cpu`] picks
/// (threads it starts later inherit it).
pub fn pin_process_to_one_cpu(pid: u32) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("threads of {pid}: {e}"));
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            pin_thread_to_cpu0(tid);
        }
    }
}

fn pin_thread_to_cpu0(tid: libc::pid_t) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for one thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity {tid}"
        );
    }
}

/// Privileged tests call this first. As root it returns; otherwise it fails
/// the test (a privileged test never reports a skip as a pass).
pub fn require_root() {
    // SAFETY: trivial libc call.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (BPF, network namespaces); run `cargo xtask test` as root"
    );
}

/// The `failover` binary the agent tests start: `$FAILOVER_BIN` (set by
/// `cargo xtask test`), else the `failover` binary of the same target profile.
pub fn failover_bin() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("FAILOVER_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // Test binaries live in target/<profile>/deps, other binaries (the
    // bench) in target/<profile> itself.
    let dir = exe.parent().expect("target directory");
    let path = if dir.ends_with("deps") {
        dir.parent().expect("target directory").join("failover")
    } else {
        dir.join("failover")
    };
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test` (it builds the binary first) or `cargo build -p failover-user`",
        path.display()
    );
    path
}
