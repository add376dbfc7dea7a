//! The lab's view of its agent: its log, the `failover` CLI run against it
//! (control verbs, `inspect` of its pins, `status`), and the diagnostics
//! failure messages carry.

use std::{
    fs::File,
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::AgentLab;

impl AgentLab {
    /// The whole log file (every agent process of this lab).
    pub fn full_log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// What the current (or last) agent process wrote.
    pub fn agent_log(&self) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = File::open(&self.log) {
            use std::io::Seek;
            let _ = file.seek(std::io::SeekFrom::Start(self.log_start));
            let _ = file.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Lines of the whole log containing `pattern`.
    pub fn log_lines(&self, pattern: &str) -> Vec<String> {
        self.full_log()
            .lines()
            .filter(|l| l.contains(pattern))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (bounded) until the current agent's log contains `pattern`.
    pub fn wait_log(&self, pattern: &str, bound: Duration) {
        let started = Instant::now();
        while !self.agent_log().contains(pattern) {
            assert!(
                started.elapsed() < bound,
                "no {pattern:?} in the agent log within {bound:?}\n{}",
                self.diag()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `failover <args>`; returns stdout, panics (with diagnostics) on
    /// failure.
    pub fn failover(&self, args: &[&str]) -> String {
        let output = self.failover_output(args);
        assert!(
            output.status.success(),
            "failover {args:?}: {}\nstdout: {}\nstderr: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.diag()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `failover <args>` and returns its output, whatever its exit
    /// status (for commands expected to fail).
    pub fn failover_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(crate::failover_bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run failover")
    }

    /// `failover --socket <lab socket> <args>`: a control verb; returns
    /// stdout, panics (with diagnostics) on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let socket = self.socket();
        let mut all = vec!["--socket", socket.to_str().expect("utf-8 socket path")];
        all.extend_from_slice(args);
        self.failover(&all)
    }

    /// [`Self::ctl`] with `--json`, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ctl(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("failover {args:?}: {e}: {text}"))
    }

    /// [`Self::ctl`] for a verb that may fail: (exit success, stdout + stderr).
    pub fn ctl_output(&self, args: &[&str]) -> (bool, String) {
        let socket = self.socket();
        let mut all = vec!["--socket", socket.to_str().expect("utf-8 socket path")];
        all.extend_from_slice(args);
        let output = self.failover_output(&all);
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// `failover inspect --pin-dir <pins> <what> --json`, parsed.
    /// (`what` may carry the subcommand's own arguments.)
    pub fn inspect(&self, what: &[&str]) -> serde_json::Value {
        let pin_dir = self.pin_dir().to_str().expect("utf-8 pin dir").to_owned();
        let mut args = vec!["inspect", "--pin-dir", &pin_dir];
        args.extend_from_slice(what);
        args.push("--json");
        let text = self.failover(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("inspect {what:?}: {e}: {text}"))
    }

    /// `failover --socket <lab socket> status --json`, parsed.
    /// The agent's status (`failover status --json`), typed.
    pub fn status(&self) -> crate::status::StatusAnswer {
        let socket = self.socket();
        let socket = socket.to_str().expect("utf-8 socket path");
        let text = self.failover(&["--socket", socket, "status", "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status: {e}: {text}"))
    }

    /// A counter (verdict, outcome or event) by name, from `inspect counters`.
    pub fn counter(&self, name: &str) -> u64 {
        let counters = self.inspect(&["counters"]);
        counters
            .as_array()
            .expect("counters array")
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {name}: {counters}"))
    }

    /// Agent log and data-path state, for failure messages. (A failure
    /// whose message lacks it gets the log printed when the lab drops.)
    pub fn diag(&self) -> String {
        self.log_shown.set(true);
        let backends = Command::new(crate::failover_bin())
            .args(["inspect", "--pin-dir"])
            .arg(self.pin_dir())
            .args(["backends"])
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_else(|e| format!("inspect: {e}"));
        format!(
            "---- failover inspect backends ----\n{backends}---- agent log ({}) ----\n{}",
            self.log.display(),
            self.full_log()
        )
    }
}
