//! Randomized data-path test: 100,000 well-formed and mutated frames through
//! the real program (BPF_PROG_TEST_RUN), checked against invariants that
//! hold for any input (see `failover_tests::fuzz`). Set FAILOVER_SEED to
//! replay a failure; the seed is in the message. `cargo xtask fuzz` runs
//! more.

use failover_tests::{fuzz, lab::TestRunLab, rng::Rng};

const PACKETS: usize = 100_000;

#[test]
fn random_and_mutated_frames_keep_the_invariants() {
    let (mut rng, seed) = Rng::from_env();
    let mut lab = TestRunLab::new();
    fuzz::set_up(&mut lab);
    let report = fuzz::run(&lab, &mut rng, seed, PACKETS);
    eprintln!(
        "seed {seed}: {PACKETS} frames in {:.1} s ({:.0} frames/s), {} rewritten ({} with valid checksums), {} icmp errors translated ({} about replies)",
        report.elapsed.as_secs_f64(),
        report.packets_per_second(),
        report.rewritten,
        report.valid_rewritten,
        report.icmp_translated,
        report.icmp_replies_translated
    );
    assert!(
        report.failures.is_empty(),
        "seed {seed}: {} frames broke an invariant:\n{}",
        report.failures.len(),
        report
            .failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
