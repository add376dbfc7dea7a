use failover_tests::agent_lab::{AgentLab, BACKEND_PORT, Failback, Layout, Options, Probe};
use std::time::Duration;
#[test]
fn dbg3() {
    let layout = Layout::primary_standby().plain_veth(true);
    let opts = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    };
    let lab = AgentLab::start_layout_unchecked(opts, layout, |_| String::new());
    let s = lab.sample(8, Duration::from_millis(300));
    eprintln!("{}", s.summary());
    let c = lab.inspect(&["counters"]);
    for x in c.as_array().unwrap() {
        if x["packets"] != 0 {
            eprintln!("{} {}", x["name"], x["packets"]);
        }
    }
    let o = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.backends[0].name(),
            "nstat",
            "-az",
            "TcpInCsumErrors",
        ])
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
}
