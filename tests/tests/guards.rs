//! The labs' guards clean up when a test panics: namespaces, pins and the
//! agent process all go, whatever the test was doing.

use std::{process::Command, time::Duration};

use failover_tests::agent_lab::{AgentLab, BACKEND_PORT, Failback, Options, Probe};

const CHILD: &str = "FAILOVER_GUARDS_CHILD";

#[test]
fn a_test_that_panics_in_the_middle_of_a_lab_leaves_nothing_behind() {
    if let Some(pid_file) = std::env::var_os(CHILD) {
        // The child: a lab with a running agent, then a panic.
        let lab = AgentLab::start(Options {
            probe: Probe::Tcp { port: BACKEND_PORT },
            failback: Failback::Auto(Duration::from_secs(5)),
        });
        let pids = format!("{} {}", std::process::id(), lab.agent_pid());
        std::fs::write(pid_file, pids).unwrap();
        panic!("a deliberate panic with a lab up");
    }
    failover_tests::require_root();
    let pid_file = std::env::temp_dir().join(format!("fo-guards-{}", std::process::id()));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_test_that_panics_in_the_middle_of_a_lab_leaves_nothing_behind",
            "--nocapture",
        ])
        .env(CHILD, &pid_file)
        .output()
        .expect("run the child test");
    assert!(!child.status.success(), "the child was meant to panic");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(stderr.contains("a deliberate panic"), "{stderr}");
    let pids = std::fs::read_to_string(&pid_file).expect("the child wrote its pids");
    let _ = std::fs::remove_file(&pid_file);
    let (test_pid, agent) = pids.trim().split_once(' ').unwrap();
    let agent: i32 = agent.parse().unwrap();
    // SAFETY: signal 0 only checks whether the process exists.
    let agent_alive = unsafe { libc::kill(agent, 0) } == 0;
    assert!(
        !agent_alive,
        "the agent {agent} outlived the panicking test"
    );
    // Every name the child made carries its pid.
    let mark = format!("-{test_pid}-");
    let namespaces = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let left: Vec<&str> = namespaces.lines().filter(|l| l.contains(&mark)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let pins: Vec<String> = std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(&format!("fo-test-{test_pid}-")))
        .collect();
    assert!(pins.is_empty(), "pins left: {pins:?}");
}
