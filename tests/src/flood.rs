//! A flood of TCP SYNs (or first ACKs) from unique spoofed sources at the
//! generator's full rate, sent as live frames out of a lab interface, and
//! the backends' door that counts and drops what of it reaches them (the
//! harness programs `bench_syn_flood`, which varies the source of whatever
//! template it is given, and `bench_door`).
//!
//! The generator runs BPF_PROG_TEST_RUN in live-frames mode on the calling
//! thread's CPU: every frame it sends out of the client's veth is received
//! by the edge host's XDP program in the same softirq, so the flood takes
//! one core, as fast as our program absorbs it.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};

use crate::{
    bench::{harness_object, xdp_mut},
    netns::NetNs,
    packet::{Frame, TCP_ACK, TCP_SYN},
};

/// Every flood frame has exactly this many bytes (a SYN and Ethernet
/// padding), the harness's frame length.
const FRAME_LEN: usize = 64;
/// The spoofed sources: the generator varies the address's last two bytes
/// and the port, from this template.
pub const SPOOFED: (Ipv4Addr, u16) = (Ipv4Addr::new(198, 18, 0, 0), 1024);
/// Frames per live-frames test run: about a tenth of a second each.
const CHUNK: u32 = 300_000;
/// Frames the kernel sends per batch in live-frames mode.
const BATCH: u32 = 64;

/// What a flood sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub frames: u64,
    pub seconds: f64,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.frames as f64 / self.seconds
    }
}

/// The generator and the door, loaded.
pub struct Flood {
    harness: Ebpf,
    frame: Vec<u8>,
}

impl Flood {
    /// A flood of SYNs to `target` (they record no flow).
    pub fn syns(target: (Ipv4Addr, u16)) -> Self {
        Self::load(target, TCP_SYN)
    }

    /// A flood of first ACKs to `target`: each would record a flow.
    pub fn first_acks(target: (Ipv4Addr, u16)) -> Self {
        Self::load(target, TCP_ACK)
    }

    /// Loads both programs; the flood's frames carry TCP `flags`.
    fn load(target: (Ipv4Addr, u16), flags: u8) -> Self {
        let mut harness = Ebpf::load(harness_object()).expect("load the bench harness");
        for name in ["bench_syn_flood", "bench_door"] {
            xdp_mut(&mut harness, name).load().expect(name);
        }
        // Any MACs: XDP sees every frame on a veth, and the forwarder
        // writes the next hop's.
        let mut frame = Frame::tcp(SPOOFED, target, flags)
            .macs([0x02, 0, 0, 0, 0xf1, 0x01], [0x02, 0, 0, 0, 0xf1, 0x02])
            .with_payload(&[])
            .build();
        assert!(frame.len() <= FRAME_LEN);
        frame.resize(FRAME_LEN, 0);
        let mut words = [0u64; FRAME_LEN / 8];
        for (word, chunk) in words.iter_mut().zip(frame.chunks_exact(8)) {
            *word = u64::from_ne_bytes(chunk.try_into().unwrap());
        }
        let mut template: Array<_, [u64; FRAME_LEN / 8]> =
            Array::try_from(harness.map_mut("BENCH_TEMPLATE").expect("template map"))
                .expect("template");
        template.set(0, words, 0).expect("template write");
        Self { harness, frame }
    }

    /// The door, loaded, for the lab to attach on the backends' side.
    pub fn door(&mut self) -> &mut Xdp {
        xdp_mut(&mut self.harness, "bench_door")
    }

    /// Floods out of `ifindex` in `ns` for `length` (whole test runs, so a
    /// little longer); returns what was sent.
    pub fn run(&self, ns: &NetNs, ifindex: u32, length: Duration) -> Sent {
        let started = Instant::now();
        let mut frames = 0;
        while started.elapsed() < length {
            self.burst(ns, ifindex, CHUNK);
            frames += u64::from(CHUNK);
        }
        Sent {
            frames,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// Sends `frames` frames out of `ifindex` in `ns` in one test run.
    pub fn burst(&self, ns: &NetNs, ifindex: u32, frames: u32) {
        let generator = self.generator();
        let ctx = crate::lab::xdp_md(FRAME_LEN as u32, ifindex);
        ns.run(|| {
            generator.test_run(TestRunOptions {
                data_in: Some(&self.frame),
                ctx_in: Some(&ctx),
                repeat: frames,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..TestRunOptions::new()
            })
        })
        .expect("BPF_PROG_TEST_RUN (live frames)");
    }

    fn generator(&self) -> &Xdp {
        self.harness
            .program("bench_syn_flood")
            .expect("generator")
            .try_into()
            .expect("generator")
    }

    /// The frame the generator makes at its `n`th repetition on this CPU
    /// (a plain test run, `n` ≥ 1): for checking its bytes.
    pub fn frame_after(&self, n: u32) -> Vec<u8> {
        let generator = self.generator();
        let mut out = vec![0; FRAME_LEN];
        let result = generator
            .test_run(TestRunOptions {
                data_in: Some(&self.frame),
                data_out: Some(&mut out),
                repeat: n,
                ..TestRunOptions::new()
            })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(result.return_value, 3, "the generator's XDP_TX");
        out
    }

    /// Spoofed SYNs the door dropped so far, summed over CPUs.
    pub fn at_the_door(&self) -> u64 {
        let counts: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.harness.map("BENCH_DOOR_COUNTS").expect("door counts"))
                .expect("door counts");
        counts.get(&0, 0).expect("door counts").iter().sum()
    }
}
