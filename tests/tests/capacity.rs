//! A configuration that does not fit the data path's maps is refused by
//! `failover check`, `failover run` and `failover reload`, naming the
//! limit, before anything is written.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use failover::lab::child::Child;
use failover_tests::{
    config::{BackendToml, ConfigToml, ProbeToml, ServiceToml},
    pins::PinDir,
};

/// `services` services of `backends` backends each (VIPs from
/// 203.0.113.0/24 and 198.18.0.0/15, ports from 1000), Maglev tables of
/// `table_size` slots. No interfaces: nothing is attached anywhere.
fn config(pin_dir: &Path, socket: &Path, services: u32, backends: u32, table_size: u32) -> String {
    let mut config = ConfigToml::new()
        .pin_dir(pin_dir)
        .control_socket(socket)
        .metrics("");
    for s in 0..services {
        let vip = Ipv4Addr::new(198, 18, (s / 250) as u8, (s % 250 + 1) as u8);
        let mut service = ServiceToml::tcp(format!("s{s}"), vip, (1000 + s % 1000) as u16)
            .table_size(table_size)
            .probe(ProbeToml::tcp().interval(Duration::from_secs(10)));
        for b in 0..backends {
            let address = Ipv4Addr::new(198, 51, 100, (b % 250 + 1) as u8);
            service = service.backend(
                BackendToml::new(format!("b{b}"), address)
                    .port((2000 + (s * 64 + b) % 60_000) as u16),
            );
        }
        config = config.service(service);
    }
    config.render()
}

fn failover(args: &[&str]) -> std::process::Output {
    Command::new(failover_tests::failover_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run failover")
}

#[test]
fn configurations_beyond_a_limit_are_refused_before_anything_is_written() {
    failover_tests::require_root();
    let dir = std::env::temp_dir().join(format!("fo-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "1025 services",
            1025,
            1,
            0,
            "1025 services; the data path holds at most 1024",
        ),
        (
            "40 large Maglev tables",
            40,
            2,
            1_000_003,
            "lower table_size",
        ),
        (
            "65 backends in one service",
            1,
            65,
            0,
            "65 backends; at most 64 per service",
        ),
        (
            "4,160 backends in all",
            65,
            64,
            0,
            "4160 backends in all services; the data path holds at most 4096",
        ),
    ];
    for (what, services, backends, table_size, limit) in cases {
        let pins = PinDir::new();
        let path = dir.join("failover.toml");
        let socket = dir.join("control.sock");
        std::fs::write(
            &path,
            config(pins.path(), &socket, services, backends, table_size),
        )
        .unwrap();
        let path = path.to_str().unwrap();

        let check = failover(&["check", "--config", path]);
        let said = String::from_utf8_lossy(&check.stderr).into_owned()
            + &String::from_utf8_lossy(&check.stdout);
        assert!(
            !check.status.success() && said.contains(limit),
            "{what}: `failover check` must refuse, naming the limit ({limit:?}); it said:\n{said}"
        );

        let started = Instant::now();
        let run = failover(&["run", "--config", path]);
        let said = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(
            !run.status.success() && said.contains(limit),
            "{what}: `failover run` must refuse, naming the limit; it said:\n{said}"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(
            !pins.path().join("FO_SERVICES").exists(),
            "{what}: the refused start left pins behind"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_configuration_at_the_limits_starts_whole() {
    failover_tests::require_root();
    let dir = std::env::temp_dir().join(format!("fo-capacity-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pins = PinDir::new();
    let path = dir.join("failover.toml");
    let socket = dir.join("control.sock");
    // Every service slot and every backend slot, default Maglev tables.
    std::fs::write(&path, config(pins.path(), &socket, 1024, 4, 16_411)).unwrap();
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    // In the root namespace: the configuration attaches to no interface.
    let mut agent = Child::spawn(
        Command::new(failover_tests::failover_bin())
            .args(["run", "--config"])
            .arg(&path)
            .arg("--pid-file")
            .arg(dir.join("agent.pid"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
        None,
        Duration::from_secs(5),
    )
    .expect("start the agent");
    let started = Instant::now();
    let read_log = || std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    while !read_log().contains("agent running") {
        if let Ok(Some(status)) = agent.try_wait() {
            panic!("the agent exited: {status}\n{}", read_log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let services = failover(&[
        "inspect",
        "--pin-dir",
        pins.path().to_str().unwrap(),
        "--json",
        "services",
    ]);
    let services: serde_json::Value = serde_json::from_slice(&services.stdout).unwrap();
    assert_eq!(services.as_array().map(Vec::len), Some(1024));
    drop(agent);
    drop(pins);
    let _ = std::fs::remove_dir_all(&dir);
}
