//! `failover inspect` against maps pinned by a real data path: `explain`
//! must predict exactly the backend the program then picks, and the tables
//! must reflect what the program did.

use std::{net::Ipv4Addr, process::Command};

use failover::BackendSpec;
use failover_tests::{lab::*, packet};
use serde_json::Value;

fn inspect(pin_dir: &std::path::Path, args: &[&str]) -> Result<Value, String> {
    let output = Command::new(failover_tests::failover_bin())
        .arg("inspect")
        .arg("--pin-dir")
        .arg(pin_dir)
        .arg("--json")
        .args(args)
        .output()
        .expect("run failover inspect");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).expect("inspect prints JSON"))
}

/// The client's first ACK: the packet that records a TCP flow.
fn first_ack(port: u16) -> Vec<u8> {
    use failover_tests::fixture::{client, from_client, vip};
    from_client(packet::Frame::tcp(client(port), vip(80), packet::TCP_ACK)).build()
}

#[test]
fn explain_predicts_the_data_path_and_tables_follow_it() {
    let backends = [BACKEND_1, BACKEND_2, BACKEND_3];
    let (lab, entry) = TestRunLab::with_tcp_service(80, &backends.map(BackendSpec::new));
    let id_of = |addr: Ipv4Addr| backend_id(&entry, addr);
    let pins = lab.pins.path().to_owned();

    for port in 42000..42020 {
        let src = format!("{CLIENT}:{port}");
        let predicted = inspect(&pins, &["explain", "tcp", &src, &format!("{VIP}:80")]).unwrap();
        assert_eq!(predicted["path"], "new_flow", "{predicted}");
        let result = lab.run(&first_ack(port), lab.client_ifindex);
        let sent_to = packet::parse(&result.output).expect("rewritten frame").dst;
        assert_eq!(
            predicted["backend"],
            id_of(sent_to),
            "explain must predict the pick: {predicted}"
        );

        let followed = inspect(&pins, &["explain", "tcp", &src, &format!("{VIP}:80")]).unwrap();
        assert_eq!(followed["path"], "established", "{followed}");
        assert_eq!(followed["backend"], id_of(sent_to));
    }

    let other = inspect(&pins, &["explain", "tcp", "192.0.2.2:1", "203.0.113.99:80"]).unwrap();
    assert_eq!(other["path"], "pass_no_service");

    let counters = inspect(&pins, &["counters"]).unwrap();
    let new_flows = counters
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == "fwd_new_flow")
        .expect("fwd_new_flow row");
    assert_eq!(new_flows["packets"], 20);

    let rows = inspect(&pins, &["backends"]).unwrap();
    let sent: u64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["packets_to"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, 20);
    let flows = inspect(&pins, &["flows", "--filter", ":42000"]).unwrap();
    let flows = flows.as_array().unwrap();
    assert_eq!(flows.len(), 1, "one entry per flow: {flows:?}");
    assert_eq!(flows[0]["state"], "open", "{flows:?}");
    let lifetime = flows[0]["expires_in_s"].as_f64().unwrap();
    assert!(
        (3_500.0..=3_600.0).contains(&lifetime),
        "an open TCP flow lives an hour without packets: {flows:?}"
    );

    let err = inspect(
        std::path::Path::new("/sys/fs/bpf/fo-test-nothing-here"),
        &["services"],
    )
    .unwrap_err();
    assert!(err.contains("nothing pinned"), "{err}");
}
