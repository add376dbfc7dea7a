//! Interfaces, locks and failed starts.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{AgentLab, FAILOVER_BOUND, PRIMARY},
    config::InterfaceToml,
    status::new_flows_to,
};

use crate::{
    flows::{all_new_flows_on, expect_new_flows_on},
    tcp_probe,
};

#[test]
fn the_agent_reattaches_to_an_interface_recreated_while_it_was_down() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.kill_agent();
    // The standby's link is deleted and created again: the pinned link of
    // the old interface is severed.
    lab.recreate_backend_link(1);
    lab.start_agent();
    lab.wait_log("XDP attached again", Duration::from_secs(2));
    // Traffic to and from the standby crosses the new interface: replies
    // are only put back to the VIP if XDP is attached there.
    drop(lab.servers[PRIMARY].take());
    let gap = expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(6));
    assert!(gap < FAILOVER_BOUND, "took {gap:?}\n{}", lab.diag());
}

/// `failover run` in the lab's lb namespace (entered with nsenter, as an
/// operator would, without hiding bpffs), to completion within `bound`.
fn run_agent_in_lb(
    lab: &AgentLab,
    config: &std::path::Path,
    pid_file: &std::path::Path,
    bound: Duration,
) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.lb.name()))
        .arg(failover_tests::failover_bin())
        .args(["run", "--config"])
        .arg(config)
        .arg("--pid-file")
        .arg(pid_file)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second agent");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_agent_on_the_same_pin_directory_is_refused_and_names_the_first() {
    let lab = AgentLab::start(tcp_probe());
    let first = lab.agent_pid();
    let (code, said) = run_agent_in_lb(
        &lab,
        lab.config_path(),
        lab.pid_file(),
        Duration::from_secs(10),
    );
    assert!(
        code.is_some_and(|c| c != 0) && said.contains(&format!("pid {first}")),
        "the second agent must refuse and name the first ({first}): exit {code:?}\n{said}"
    );
    // The first one's pid file, control socket and forwarding are intact.
    let pid_file = std::fs::read_to_string(lab.pid_file()).unwrap();
    assert_eq!(pid_file.trim(), first.to_string());
    assert_eq!(new_flows_to(&lab.status(), "web"), ["primary"]);
    all_new_flows_on(&lab, "primary", 10, "with a refused second agent");
}

#[test]
fn failback_never_signals_a_process_that_is_not_the_agent() {
    let lab = AgentLab::start(tcp_probe());
    // A stale pid file naming a process that is not an agent (this test).
    let stale = lab.dir().join("stale.pid");
    std::fs::write(&stale, format!("{}\n", std::process::id())).unwrap();
    let output = lab.failover_output(&["failback", "--pid-file", stale.to_str().unwrap()]);
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("not a running `failover run`"),
        "{output:?}"
    );
}

#[test]
fn a_start_with_an_unknown_interface_attaches_nothing_and_leaves_nothing() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.kill_agent();
    let pins = lab.pin_dir().to_str().unwrap().to_owned();
    lab.failover(&["detach", "--pin-dir", &pins]);
    // An interface that does not exist, after one that does.
    let mut broken = lab.config().clone();
    assert_eq!(broken.interfaces[0].name, "lbc");
    broken.interfaces.insert(1, InterfaceToml::new("nosuch0"));
    let path = lab.dir().join("broken.toml");
    broken.write(&path);
    let (code, said) = run_agent_in_lb(
        &lab,
        &path,
        &lab.dir().join("broken.pid"),
        Duration::from_secs(10),
    );
    assert!(
        code.is_some_and(|c| c != 0) && said.contains("nosuch0"),
        "exit {code:?}\n{said}"
    );
    let links = std::process::Command::new("ip")
        .args(["-n", lab.lb.name(), "-d", "link", "show", "lbc"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("xdp"),
        "lbc was left with XDP attached:\n{links}"
    );
    assert!(
        !lab.pin_dir().join("FO_SERVICES").exists(),
        "the failed start left pins:\n{said}"
    );
}
