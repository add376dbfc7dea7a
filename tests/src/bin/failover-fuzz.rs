//! `cargo xtask fuzz [--packets N] [--seed S]`: random and mutated frames
//! through the real XDP program with the invariants of
//! `failover_tests::fuzz`; prints the seed and frames per second, exits
//! non-zero on any broken invariant. Needs root.

use std::process::ExitCode;

use failover_tests::{fuzz, lab::TestRunLab, rng::Rng};

const DEFAULT_PACKETS: usize = 1_000_000;
/// Frames per round: each round gets a fresh lab (conntrack empty again),
/// so the runs stay comparable and the table never fills.
const ROUND: usize = 250_000;

fn main() -> ExitCode {
    let mut packets = DEFAULT_PACKETS;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = value
            .as_deref()
            .and_then(|v| v.replace('_', "").parse::<u64>().ok());
        match (arg.as_str(), parsed) {
            ("--packets", Some(n)) if (1..=1_000_000_000).contains(&n) => packets = n as usize,
            ("--seed", Some(s)) => seed = Some(s),
            _ => {
                eprintln!(
                    "failover-fuzz: unknown or bad argument {arg:?} {value:?}\n\
                     usage: failover-fuzz [--packets N (1..1e9)] [--seed S]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (mut rng, seed) = match seed {
        Some(seed) => (Rng(seed), seed),
        None => Rng::from_env(),
    };
    println!("fuzz: {packets} frames, seed {seed} (replay with --seed {seed})");
    let mut done = 0;
    let mut failures = Vec::new();
    let mut elapsed = std::time::Duration::ZERO;
    let mut rewritten = 0;
    let mut icmp_translated = 0;
    while done < packets {
        let round = ROUND.min(packets - done);
        let mut lab = TestRunLab::new();
        fuzz::set_up(&mut lab);
        let report = fuzz::run(&lab, &mut rng, seed, round);
        done += round;
        elapsed += report.elapsed;
        rewritten += report.rewritten;
        icmp_translated += report.icmp_translated;
        failures.extend(report.failures);
        println!(
            "fuzz: {done} of {packets} frames, {:.0} frames/s, {} broken invariants so far",
            done as f64 / elapsed.as_secs_f64(),
            failures.len()
        );
    }
    println!(
        "fuzz: {packets} frames in {:.1} s: {:.0} frames/s through BPF_PROG_TEST_RUN (one syscall each), \
         {rewritten} rewritten, {icmp_translated} icmp errors translated, seed {seed}",
        elapsed.as_secs_f64(),
        packets as f64 / elapsed.as_secs_f64()
    );
    if failures.is_empty() {
        println!("fuzz: every invariant held");
        return ExitCode::SUCCESS;
    }
    println!(
        "fuzz: {} frames broke an invariant (seed {seed}):",
        failures.len()
    );
    for failure in failures.iter().take(50) {
        println!("  {failure}");
    }
    ExitCode::FAILURE
}
