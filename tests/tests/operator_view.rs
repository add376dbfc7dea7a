//! What an operator looks at. The status page in a real browser: headless
//! Chromium loads `GET /` from the agent in the lab before and during a
//! failover, and the test reads the DOM the page's script rendered from
//! `/status.json` (the standby shown taking new flows, the failover listed
//! with its evidence); a screenshot is kept under `target/` for people to
//! look at. And `failover status --watch`, the same in a terminal.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use failover::lab::child::Child;

use failover_tests::agent_lab::{AgentLab, Failback, HEALTH_PORT, Options, PRIMARY, Probe};

const PORT: u16 = 9393;
/// How long one Chromium run may take before it is killed (by its pid).
const BROWSER_BOUND: Duration = Duration::from_secs(60);

/// Chromium run in the lab's lb namespace (where the endpoint listens on
/// loopback) with `args`, bounded (its whole process group killed past
/// that); its stdout, by way of a file in `profile`.
fn chromium(lab: &AgentLab, profile: &Path, args: &[&str]) -> String {
    let out_path = profile.join("stdout");
    let out = std::fs::File::create(&out_path).expect("create chromium's output file");
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // The page's first fetch and render, in virtual time.
        .arg("--virtual-time-budget=5000")
        .args(args)
        .arg(format!("http://127.0.0.1:{PORT}/"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null());
    let mut browser = Child::spawn(&mut command, Some(&lab.lb), Duration::from_secs(2))
        .expect("run chromium (cargo xtask setup installs it)");
    let status = browser
        .wait_bounded(BROWSER_BOUND)
        .expect("wait for chromium")
        .unwrap_or_else(|| panic!("chromium did not finish within {BROWSER_BOUND:?}"));
    assert!(status.success(), "chromium failed: {status}");
    std::fs::read_to_string(&out_path).expect("read the DOM")
}

fn dom(lab: &AgentLab, profile: &Path) -> String {
    let dom = chromium(lab, profile, &["--dump-dom"]);
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never rendered /status.json:\n{dom}\n{}",
        lab.diag()
    );
    dom
}

/// The row of backend `name` of service web, as rendered.
fn row<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-backend=\"web/{name}\""))
        .unwrap_or_else(|| panic!("no row for {name}:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

#[test]
fn the_status_page_shows_a_failover_as_it_happens_in_a_real_browser() {
    let lab = AgentLab::start_with(
        Options {
            probe: Probe::Tcp { port: HEALTH_PORT },
            failback: Failback::Manual,
        },
        |_, config| config.metrics(format!("127.0.0.1:{PORT}")),
    );
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    let profile = tempdir();

    let before = dom(&lab, &profile);
    assert!(
        row(&before, "primary").contains("data-takes-new=\"true\""),
        "{before}"
    );
    assert!(
        row(&before, "standby").contains("data-takes-new=\"false\""),
        "{before}"
    );
    let primary = row(&before, "primary");
    assert!(
        primary.contains("spark packets") && primary.contains("spark flows"),
        "a chart of packets and one of flows: {primary}"
    );
    assert!(
        before.contains("served on 127.0.0.1:9393"),
        "it says where it binds"
    );

    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    lab.wait_log("new flows switched", Duration::from_secs(5));
    let during = dom(&lab, &profile);
    let standby = row(&during, "standby");
    assert!(standby.contains("data-takes-new=\"true\""), "{standby}");
    let primary = row(&during, "primary");
    assert!(
        primary.contains("data-takes-new=\"false\"") && primary.contains("unhealthy"),
        "{primary}"
    );
    assert!(
        during.contains("class=\"new-flows\">standby<"),
        "the service says who takes new flows:\n{during}"
    );
    let failover = during
        .find("data-kind=\"failover\"")
        .map(|at| &during[at..during[at..].find("</li>").map_or(during.len(), |e| at + e)])
        .unwrap_or_else(|| panic!("the failover is not listed:\n{during}"));
    assert!(
        failover.contains("primary") && failover.contains("standby"),
        "{failover}"
    );
    assert!(
        during.contains("id=\"failovers\">1<"),
        "one failover counted:\n{during}"
    );

    // The picture, for people (README's screenshot comes from here).
    let shot = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &lab,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,760",
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {} ({} KB)", shot.display(), png.len() / 1024);
    let _ = std::fs::remove_dir_all(&profile);
}

/// A fresh browser profile directory.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fo-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the profile directory");
    dir
}

#[test]
fn status_watch_refreshes_in_place_with_packet_rates_and_the_last_events() {
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Manual,
    });
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    lab.wait_log("new flows switched", Duration::from_secs(5));
    let (ok, out) = lab.ctl_output(&["status", "--watch", "--interval", "200ms", "--count", "3"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("\x1b[H\x1b[2J").count(),
        3,
        "three frames, each drawn in place:\n{out}"
    );
    let last = out.rsplit("\x1b[H\x1b[2J").next().unwrap_or_default();
    assert!(last.contains("new flows -> standby"), "{last}");
    assert!(
        last.contains("pkts/s to"),
        "rates from the second frame on:\n{last}"
    );
    assert!(
        last.contains("failover: web: new flows primary -> standby"),
        "the last events:\n{last}"
    );
    assert!(last.contains("Ctrl-C to stop"), "{last}");
    // Bad intervals are refused with their bounds; --watch is no JSON.
    let (ok, out) = lab.ctl_output(&["status", "--watch", "--interval", "10ms"]);
    assert!(!ok && out.contains("between 100ms and 1h"), "{out}");
    let (ok, out) = lab.ctl_output(&["status", "--watch", "--json"]);
    assert!(!ok && out.contains("--watch draws a table"), "{out}");
}
