//! Builds the benchmark's harness programs (`failover-bench-ebpf`) for the BPF
//! target and leaves the object in OUT_DIR for `failover_tests::bench_object`.
//! They live in their own crate so the product's object never carries them.

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../failover-bench-ebpf");
    // The harness borrows the panic handler and license from failover-ebpf's
    // library; aya-build already watches the harness crate itself.
    println!("cargo:rerun-if-changed=../failover-ebpf/src/lib.rs");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "failover-bench-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
