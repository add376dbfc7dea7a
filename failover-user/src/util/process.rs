//! Running the operator's programs — exec probes, cold-standby start
//! commands, alert hooks — the one way: in a process group of their own,
//! bounded in time. At the limit, or when the caller gives up (its future is
//! dropped, e.g. by a probe timeout), the whole group is killed, so helpers
//! the program started go too.

use std::{net::IpAddr, process::ExitStatus, time::Duration};

use tokio::{io::AsyncWriteExt, process::Command};

/// Running a program failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("empty command")]
    Empty,
    #[error("starting {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {status}")]
    Exit { program: String, status: ExitStatus },
    #[error("{program} timed out after {after:?}; its process group was killed")]
    TimedOut { program: String, after: Duration },
}

/// `{address}` and `{port}` in each argument replaced.
pub fn substitute(args: &[String], address: IpAddr, port: u16) -> Vec<String> {
    args.iter()
        .map(|arg| {
            arg.replace("{address}", &address.to_string())
                .replace("{port}", &port.to_string())
        })
        .collect()
}

/// Kills the process group when dropped, unless disarmed.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) has no memory-safety preconditions. The group
            // id is our child's pid (process_group(0)); a group's id is not
            // given to a new process while the group has members.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// Runs `args` (program first) with `env`, writing `stdin` to it (then
/// closing it), for at most `limit`. Success is exit status 0.
pub async fn run(
    args: &[String],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<(), RunError> {
    let (program, rest) = args.split_first().ok_or(RunError::Empty)?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut group = Group(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let mut input = child.stdin.take();
    let finished = tokio::time::timeout(limit, async {
        if let (Some(pipe), Some(bytes)) = (input.as_mut(), stdin) {
            // A program that does not read its input is fine: its exit
            // status decides.
            let _ = pipe.write_all(bytes).await;
        }
        drop(input);
        child.wait().await
    })
    .await;
    match finished {
        Ok(Ok(status)) => {
            // It exited by itself: what it left running is its business.
            group.0 = None;
            if status.success() {
                Ok(())
            } else {
                Err(RunError::Exit {
                    program: program.clone(),
                    status,
                })
            }
        }
        Ok(Err(source)) => Err(RunError::Wait {
            program: program.clone(),
            source,
        }),
        // The group goes when `group` drops.
        Err(_) => Err(RunError::TimedOut {
            program: program.clone(),
            after: limit,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[tokio::test]
    async fn a_timeout_kills_the_programs_helpers_too() {
        let dir = std::env::temp_dir().join(format!("fo-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("helper.pid");
        // The program starts a helper that would outlive it, then hangs.
        let script = format!("sleep 30 & echo $! > {}; sleep 30", pid_file.display());
        let err = run(
            &args(&["/bin/sh", "-c", &script]),
            &[],
            None,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut { .. }), "{err}");
        let helper: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let started = std::time::Instant::now();
        while alive(helper) && started.elapsed() < Duration::from_secs(2) {
            // A killed helper is a zombie of init until reaped; give it a moment.
            if std::fs::read_to_string(format!("/proc/{helper}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let state = std::fs::read_to_string(format!("/proc/{helper}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z "),
            "the helper survived: {state}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn exit_status_and_input() {
        assert!(
            run(&args(&["/bin/true"]), &[], None, Duration::from_secs(5))
                .await
                .is_ok()
        );
        assert!(matches!(
            run(&args(&["/bin/false"]), &[], None, Duration::from_secs(5)).await,
            Err(RunError::Exit { .. })
        ));
        let check = args(&[
            "/bin/sh",
            "-c",
            "test \"$(cat)\" = hello && test \"$X\" = y",
        ]);
        assert!(
            run(
                &check,
                &[("X", "y")],
                Some(b"hello"),
                Duration::from_secs(5)
            )
            .await
            .is_ok()
        );
        assert!(matches!(
            run(&[], &[], None, Duration::from_secs(1)).await,
            Err(RunError::Empty)
        ));
    }

    #[test]
    fn address_and_port_are_substituted() {
        let out = substitute(
            &args(&["check", "{address}:{port}", "x"]),
            std::net::Ipv4Addr::new(198, 51, 100, 2).into(),
            8080,
        );
        assert_eq!(out, ["check", "198.51.100.2:8080", "x"]);
    }
}
