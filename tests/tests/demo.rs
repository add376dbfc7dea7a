//! The demo `cargo xtask build-and-run` runs, as a new user first meets it:
//! it runs to the end, narrates what the agent says in full (a change of
//! the agent's log lines must not leave the narration guessing), and its
//! numbers add up.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The demo bounds itself at 90 s; this bounds the test beyond that.
const BOUND: Duration = Duration::from_secs(150);

fn run_demo(extra: &[&str]) -> (bool, String) {
    failover_tests::require_root();
    let mut child = Command::new(failover_tests::failover_bin())
        .arg("demo")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start failover demo");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break Some(status);
        }
        if Instant::now() > deadline {
            // Ctrl-C: the demo cleans up its lab; then make sure.
            // SAFETY: signalling the child we started, by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = reader.join().expect("the output reader");
    (status.is_some_and(|s| s.success()), text)
}

/// "  823 requests: primary 431, standby 129, backup 238, failed 25"
fn request_tally(text: &str) -> Option<(usize, Vec<usize>)> {
    let line = text.lines().find(|l| {
        l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(" requests: ")
    })?;
    let (total, rest) = line.trim().split_once(" requests: ")?;
    let parts = rest
        .split(", ")
        .map(|part| part.rsplit(' ').next()?.parse().ok())
        .collect::<Option<Vec<usize>>>()?;
    Some((total.parse().ok()?, parts))
}

#[test]
fn the_demo_runs_to_the_end_and_narrates_the_agent() {
    check_demo(&[]);
}

/// `failover demo --ipv6`: the same lab and story over IPv6.
#[test]
fn the_demo_runs_on_ipv6() {
    let text = check_demo(&["--ipv6"]);
    assert!(
        text.contains("VIP [2001:db8:10::10]:80"),
        "not on the IPv6 VIP:\n{text}"
    );
}

fn check_demo(extra: &[&str]) -> String {
    let (success, text) = run_demo(extra);
    assert!(success, "the demo failed:\n{text}");
    let agent_lines: Vec<&str> = text.lines().filter(|l| l.contains("[agent]")).collect();
    assert!(
        agent_lines.len() >= 5,
        "the agent's narration is missing:\n{text}"
    );
    // A field the narration looked for and did not find shows as "()" or
    // as an empty count.
    let garbled: Vec<&&str> = agent_lines
        .iter()
        .filter(|l| l.contains("()") || l.contains(": 0 successful") || l.contains(": 0 failed"))
        .collect();
    assert!(
        garbled.is_empty(),
        "narration lines missing the agent's fields: {garbled:#?}\n{text}"
    );
    for expected in [
        "is healthy: 2 successful probes in a row",
        "is UNHEALTHY on the data path's evidence: 3 RSTs answering",
        "failover primary -> standby:",
        "failover standby -> backup:",
        "failback to the primary:",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    let (total, parts) = request_tally(&text).unwrap_or_else(|| panic!("no tally in:\n{text}"));
    assert_eq!(
        parts.iter().sum::<usize>(),
        total,
        "the tally does not add up:\n{text}"
    );
    assert!(text.contains("cleanup:"), "no cleanup report:\n{text}");
    text
}

/// `failover demo fleet` (`cargo xtask build-and-run -- demo fleet`): two
/// edge hosts behind a router; one goes away and comes back, and every
/// long connection goes through it all.
#[test]
fn the_fleet_demo_takes_a_host_away_and_back_without_losing_a_connection() {
    let (success, text) = run_demo(&["fleet"]);
    assert!(success, "the fleet demo failed:\n{text}");
    assert!(
        text.contains("router: 203.0.113.10 via edge0 and edge1 (ECMP)"),
        "{text}"
    );
    assert!(text.contains("via edge1 only"), "{text}");
    assert!(text.contains("via edge0 and edge1 again"), "{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let (went, of) = summary
        .split("; ")
        .nth(1)
        .and_then(|part| part.split_once(" of "))
        .map(|(went, rest)| {
            (
                went.to_owned(),
                rest.split(' ').next().unwrap_or("").to_owned(),
            )
        })
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(went, of, "long connections lost: {summary}\n{text}");
    assert!(of.parse::<usize>().is_ok_and(|n| n > 40), "{summary}");
    assert!(
        text.contains("cleanup: agents, daemons, pins and namespaces removed"),
        "{text}"
    );
}
