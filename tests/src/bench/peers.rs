//! The peers we are measured against, run inside the bench's namespaces:
//! nftables DNAT (the do-it-yourself alternative) and HAProxy in TCP mode.
//! Both are Debian packages `cargo xtask bench` installs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use failover::lab::child::Child;

use crate::netns::NetNs;

/// Loads an nftables ruleset into `ns` (`nft -f`). The rules die with the
/// namespace; [`flush_nft`] removes them earlier.
pub fn apply_nft(ns: &NetNs, ruleset: &str) {
    let path = std::env::temp_dir().join(format!("{}.nft", ns.name()));
    std::fs::write(&path, ruleset).expect("write nft ruleset");
    let output = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-f"])
        .arg(&path)
        .output()
        .expect("run nft (is nftables installed? `cargo xtask bench` installs it)");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "nft -f in {}: {}",
        ns.name(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Removes every nftables rule in `ns`.
pub fn flush_nft(ns: &NetNs) {
    let status = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "flush", "ruleset"])
        .status()
        .expect("run nft");
    assert!(status.success(), "nft flush ruleset in {}", ns.name());
}

/// A DNAT ruleset: `proto` traffic to `vip:port` goes to `backend:backend_port`.
pub fn dnat_ruleset(proto: &str, vip: &str, port: u16, backend: &str, backend_port: u16) -> String {
    format!(
        "table ip fo_bench {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
         ip daddr {vip} {proto} dport {port} dnat to {backend}:{backend_port}\n  }}\n}}\n"
    )
}

/// A child process started in a namespace, stopped by its own pid in `Drop`
/// (SIGTERM, then SIGKILL after two seconds; always reaped). Its output goes
/// to a file, never a pipe.
pub struct NsProcess {
    child: Child,
    log: PathBuf,
}

impl NsProcess {
    /// Runs `program args` inside `ns` (`ip netns exec` execs it, so the pid
    /// is the program's own; no parent-death signal, so it may outlive the
    /// thread that started it).
    pub fn start(ns: &NetNs, program: &str, args: &[&str], log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("process log");
        let err = out.try_clone().expect("process log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns.name(), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = Child::spawn(&mut command, None, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("start {program} in {}: {e}", ns.name()));
        Self {
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Fails with the process's output if it already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}): {}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}
