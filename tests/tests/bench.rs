//! The benchmark's quick pass runs in the test suite: its figures are not
//! asserted (shared, noisy machines), but everything it checks while
//! measuring is — verdicts and output bytes of the data path, frames
//! rewritten at the packet-rate sink, peers that really forwarded, trials
//! that completed — and every section must produce its data.

use std::process::Command;

#[test]
fn quick_benchmark_passes_its_checks_and_reports_every_section() {
    failover_tests::require_root();
    let output = Command::new(env!("CARGO_BIN_EXE_failover-bench"))
        .arg("--quick")
        .env("FAILOVER_BIN", failover_tests::failover_bin())
        .output()
        .expect("run failover-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "failover-bench --quick failed ({}):\n{stderr}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    let report =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-quick.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("read the quick report"))
            .expect("the quick report is JSON");
    for section in [
        "datapath",
        "packet_rate",
        "requests",
        "syn_flood",
        "failover",
        "in_band",
        "soak",
        "fleet",
        "control_plane",
        "maglev",
    ] {
        assert!(
            !json[section].is_null(),
            "section {section} has no data in {}:\n{stderr}",
            report.display()
        );
    }
    assert_eq!(json["quick"], true);
}
