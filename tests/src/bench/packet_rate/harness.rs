//! The generator and the sink: the benchmark's harness programs, loaded,
//! given the frame and the expected destination, read and driven.

use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};

use super::{BATCH, FRAME_LEN, SINK_IF, lab::Lab};
use crate::{
    bench::{harness_object, xdp_mut},
    netns::NetNs,
};

fn frame_words(frame: &[u8]) -> [u64; FRAME_LEN / 8] {
    let mut words = [0u64; FRAME_LEN / 8];
    for (word, chunk) in words.iter_mut().zip(frame.chunks_exact(8)) {
        *word = u64::from_ne_bytes(chunk.try_into().unwrap());
    }
    words
}

/// Loads the generator and the sink, gives them the frame and the expected
/// destination, and attaches the sink (native) in `sink`.
pub(super) fn load_harness(sink: &NetNs, frame: &[u8], expected: (Ipv4Addr, u16)) -> Ebpf {
    let mut harness = Ebpf::load(harness_object()).expect("load bench harness");
    for name in ["bench_generate", "bench_sink"] {
        xdp_mut(&mut harness, name).load().expect(name);
    }
    let mut template: Array<_, [u64; FRAME_LEN / 8]> =
        Array::try_from(harness.map_mut("BENCH_TEMPLATE").expect("template map"))
            .expect("template");
    template
        .set(0, frame_words(frame), 0)
        .expect("template write");
    // The sink compares the frame's raw network-order bytes.
    let raw = [
        u32::from_ne_bytes(expected.0.octets()),
        u32::from(u16::from_ne_bytes(expected.1.to_be_bytes())),
    ];
    let mut expect: Array<_, [u32; 2]> =
        Array::try_from(harness.map_mut("BENCH_SINK_EXPECT").expect("expect map")).expect("expect");
    expect.set(0, raw, 0).expect("expect write");
    let sink_program = xdp_mut(&mut harness, "bench_sink");
    sink.run(|| sink_program.attach(SINK_IF, XdpMode::Driver))
        .expect("attach the sink");
    harness
}

impl Lab {
    /// Sink counters summed over CPUs: (all frames, addressed as expected).
    pub(super) fn sink_counts(&self) -> (u64, u64) {
        let counts: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.harness.map("BENCH_SINK_COUNTS").expect("counts map"))
                .expect("counts");
        let sum = |index: u32| counts.get(&index, 0).expect("sink counts").iter().sum();
        (sum(0), sum(1))
    }

    pub(super) fn sink_sample(&self) -> Vec<u8> {
        let sample: Array<_, [u64; FRAME_LEN / 8]> =
            Array::try_from(self.harness.map("BENCH_SINK_SAMPLE").expect("sample map"))
                .expect("sample");
        let words = sample.get(&0, 0).expect("sample read");
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    pub(super) fn clear_sink_sample(&mut self) {
        let mut sample: Array<_, [u64; FRAME_LEN / 8]> = Array::try_from(
            self.harness
                .map_mut("BENCH_SINK_SAMPLE")
                .expect("sample map"),
        )
        .expect("sample");
        sample.set(0, [0; FRAME_LEN / 8], 0).expect("sample clear");
    }

    /// Generates `packets` frames in one live-frames test run, from a thread
    /// in the generator's namespace. One call per round: each call costs
    /// tens of milliseconds of setup and teardown with no traffic.
    pub(super) fn generate(&self, packets: u32) {
        let generator: &Xdp = self
            .harness
            .program("bench_generate")
            .expect("generator")
            .try_into()
            .expect("generator");
        let ctx = crate::lab::xdp_md(FRAME_LEN as u32, self.gen_ifindex);
        // Live mode reports no verdict: delivery is counted at the sink.
        self.gen_ns
            .run(|| {
                generator.test_run(TestRunOptions {
                    data_in: Some(&self.frame),
                    ctx_in: Some(&ctx),
                    repeat: packets,
                    attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                    ..TestRunOptions::new()
                })
            })
            .expect("BPF_PROG_TEST_RUN (live frames)");
    }
}
