//! BIRD 2 (Debian `bird2`) as a child process inside a lab namespace: the
//! fleet labs' upstream router and each edge host's BGP speaker. Started in
//! the foreground with a configuration, control socket and log of its own
//! under the lab's directory; asked with `birdc`; stopped by the pid it was
//! started with (SIGTERM, then SIGKILL) and reaped in `Drop`.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{child::Child, netns::NetNs};

/// How long BIRD gets to open its control socket.
const START_BOUND: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Bird {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Bird {
    /// Writes `config` to `dir/<name>.conf` and runs BIRD on it inside
    /// `ns`; returns once its control socket answers.
    pub fn start(ns: &NetNs, dir: &Path, name: &str, config: &str) -> io::Result<Self> {
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, config)?;
        let socket = dir.join(format!("{name}.ctl"));
        let log = dir.join(format!("{name}.log"));
        let log_file = File::options().create(true).append(true).open(&log)?;
        let mut command = Command::new("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&path)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join(format!("{name}.pid")))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = Child::spawn(&mut command, Some(ns), STOP_TIMEOUT).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("starting bird (Debian bird2; `cargo xtask setup` installs it): {e}"),
            )
        })?;
        let mut bird = Self { child, socket, log };
        let started = Instant::now();
        while bird.birdc(&["show", "status"]).is_err() {
            if let Ok(Some(status)) = bird.child.try_wait() {
                return Err(io::Error::other(format!(
                    "bird exited ({status}) at start:\n{}",
                    bird.log_text()
                )));
            }
            if started.elapsed() > START_BOUND {
                return Err(io::Error::other(format!(
                    "bird did not answer on {} within {START_BOUND:?}:\n{}",
                    bird.socket.display(),
                    bird.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bird)
    }

    /// `birdc -s <socket> <args>`: its output, or an error with it.
    pub fn birdc(&self, args: &[&str]) -> io::Result<String> {
        let output = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && !text.contains("Unable to connect") {
            Ok(text)
        } else {
            Err(io::Error::other(format!(
                "birdc {args:?}: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (a crashed daemon), reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// SIGTERM, then SIGKILL after a grace period; reaped.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}
