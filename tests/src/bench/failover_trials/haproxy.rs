//! HAProxy: its lab, its configuration and its trials.

use std::time::Duration;

use failover::lab::topology::{self, BackendLink, Topology};

use super::{
    HAPROXY, STABLE_BACKEND_PORT, STABLE_PORT, Switchover, TrialSet,
    in_band::{Fault, SYN_TIMEOUT},
    servers::{serve, serve_stable},
    switchover::planned_switchovers,
    traffic::traffic,
    trial_loop::{FailoverLab, Outcome, trials},
};
use crate::{
    agent_lab::{BACKEND_PORT, PRIMARY, STANDBY, VIP},
    bench::{killable::KillableServer, peers::NsProcess},
    netns::NetNs,
};

struct Haproxy {
    lab: Topology,
    primary: Option<KillableServer>,
    fault: Fault,
}

impl FailoverLab for Haproxy {
    fn primary(&mut self) -> (&NetNs, &mut Option<KillableServer>) {
        (&self.lab.backends[PRIMARY], &mut self.primary)
    }

    fn fault(&self) -> Fault {
        self.fault
    }
}

/// HAProxy's configuration; `in_band`: its passive detection on the
/// primary (`observe layer4`, three errors mark it down) and a connect
/// timeout of [`SYN_TIMEOUT`].
fn haproxy_config(interval: Duration, admin: &std::path::Path, in_band: bool) -> String {
    let inter = format!("{}ms", interval.as_millis().max(1));
    let (connect, observe) = if in_band {
        (
            format!("{}ms", SYN_TIMEOUT.as_millis()),
            " observe layer4 error-limit 3 on-error mark-down",
        )
    } else {
        ("1s".to_owned(), "")
    };
    let (primary, standby) = (
        topology::backend_addr(PRIMARY),
        topology::backend_addr(STANDBY),
    );
    format!(
        "global\n  maxconn 4096\n  stats socket {} mode 600 level admin\n\ndefaults\n  mode tcp\n  timeout connect {connect}\n  timeout client 10s\n  \
         timeout server 10s\n  retries 2\n  option redispatch\n\n\
         frontend web\n  bind {VIP}:80\n  default_backend web\n\n\
         backend web\n  server primary {primary}:{BACKEND_PORT} check inter {inter} fall 3 rise 2{observe}\n  \
         server standby {standby}:{BACKEND_PORT} check inter {inter} fall 3 rise 2 backup\n\n\
         frontend stable\n  bind {VIP}:{STABLE_PORT}\n  default_backend stable\n\n\
         backend stable\n  server standby {standby}:{STABLE_BACKEND_PORT}\n",
        admin.display()
    )
}

/// HAProxy at check `interval`, as [`super::ours::ours`].
pub(super) fn haproxy(
    interval: Duration,
    count: usize,
    with_switchover: bool,
    in_band: Option<Fault>,
) -> (TrialSet, Vec<Switchover>) {
    let links = [
        BackendLink {
            role: "hpprimary",
            lb_if: "lbp",
        },
        BackendLink {
            role: "hpstandby",
            lb_if: "lbs",
        },
    ];
    let lab = Topology::build("hpclient", "hplb", &links);
    // HAProxy listens on the VIP itself.
    lab.lb
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    let standby = [
        serve(&lab.backends[STANDBY], "standby"),
        serve_stable(&lab.backends[STANDBY]),
    ];
    let primary = serve(&lab.backends[PRIMARY], "primary");
    let dir = std::env::temp_dir().join(format!("fo-bench-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("haproxy dir");
    let config = dir.join("haproxy.cfg");
    let admin = dir.join("admin.sock");
    std::fs::write(&config, haproxy_config(interval, &admin, in_band.is_some()))
        .expect("haproxy config");
    let mut process = NsProcess::start(
        &lab.lb,
        "haproxy",
        &["-db", "-f", config.to_str().expect("utf-8 path")],
        &dir.join("haproxy.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    process.assert_running();
    let mut haproxy = Haproxy {
        lab,
        primary: Some(primary),
        fault: in_band.unwrap_or(Fault::Kill),
    };
    let traffic = traffic(&haproxy.lab.client, false);
    let Outcome {
        trials,
        long_errors_between,
        mut failures,
    } = trials(&mut haproxy, &traffic, count, false);
    // Planned: drain the primary (the backup takes new flows once no
    // active server may), then make it ready again.
    let switchovers = if with_switchover && failures.is_empty() {
        planned_switchovers(HAPROXY, &traffic, &mut failures, |to| {
            let state = if to == "standby" { "drain" } else { "ready" };
            haproxy_command(&admin, &format!("set server web/primary state {state}"))
        })
    } else {
        Vec::new()
    };
    drop(traffic);
    drop(process);
    drop(standby);
    let _ = std::fs::remove_dir_all(&dir);
    let set = TrialSet {
        peer: HAPROXY,
        interval,
        trials,
        decision_to_flip_us: Vec::new(),
        detection_ms: Vec::new(),
        journal_failovers: None,
        long_errors_between,
        standby_false_downs: None,
        failures,
    };
    (set, switchovers)
}

/// One command on HAProxy's admin socket; its answer must be empty (success).
fn haproxy_command(socket: &std::path::Path, command: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{command}: {}", answer.trim()))
    }
}
