//! Builds the benchmark's harness programs (`failover-bench-ebpf`) for the BPF
//! target and leaves the object in OUT_DIR for `failover_tests::bench_object`.
//! They live in their own crate so the product's object never carries them.

#[path = "../build-support/ebpf.rs"]
mod ebpf;

fn main() {
    let root_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../failover-bench-ebpf");
    // The harness borrows the panic handler and license from failover-ebpf's
    // library; the harness crate itself is watched by the build.
    println!("cargo:rerun-if-changed=../failover-ebpf/src/lib.rs");
    ebpf::exit_on_error(ebpf::build(
        "failover-bench-ebpf",
        &root_dir,
        &["failover-bench"],
    ));
}
