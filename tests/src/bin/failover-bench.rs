//! `cargo xtask bench` runs this: see `failover_tests::bench`.

fn main() -> std::process::ExitCode {
    failover_tests::bench::main()
}
