//! `cargo xtask bench`: every measurement of the project in one run, each
//! against baselines measured in the same run on the same machine.
//!
//! Each section returns its Markdown, its JSON and rows for the summary
//! table; a correctness check that fails inside a section (wrong verdict,
//! wrong bytes, a peer that did not forward) is a failure of the benchmark.
//! A full run rewrites BENCHMARKS.md and BENCHMARKS.json at the workspace
//! root; `--quick` writes them under target/.

pub mod acceptor;
pub mod control_plane;
pub mod cpu;
pub mod datapath;
pub mod failover_trials;
pub mod fleet;
pub mod killable;
pub mod maglev;
pub mod packet_rate;
pub mod peers;
pub mod requests;
pub mod serving;
pub mod soak;
pub mod syn_flood;

use std::{panic::AssertUnwindSafe, process::ExitCode, time::Instant};

/// The harness programs (frame restore + tail call, MAC-swap floor, packet
/// generator and sink) from `failover-bench-ebpf`, built by `tests/build.rs`.
pub fn harness_object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/failover-bench"))
}

/// Program `name` of a harness object, as XDP.
pub(crate) fn xdp_mut<'a>(ebpf: &'a mut aya::Ebpf, name: &str) -> &'a mut aya::programs::Xdp {
    ebpf.program_mut(name).expect(name).try_into().expect(name)
}

/// One part of the report.
pub struct Section {
    pub title: &'static str,
    pub markdown: String,
    pub json: serde_json::Value,
    pub summary: Vec<Row>,
    /// Correctness problems found while measuring; any fails the run.
    pub failures: Vec<String>,
}

/// A line of the summary table.
pub struct Row {
    pub measure: String,
    pub ours: String,
    pub reference: String,
    pub ratio: String,
}

impl Row {
    /// `ours` against `reference` (described as `what`), both to `digits`
    /// decimals, and their ratio.
    pub fn compared(measure: &str, ours: f64, reference: f64, what: &str, digits: usize) -> Self {
        Self {
            measure: measure.into(),
            ours: format!("{ours:.digits$}"),
            reference: format!("{reference:.digits$} ({what})"),
            ratio: format!("{:.2}x", ours / reference),
        }
    }
}

/// Median, percentiles and range of a set of samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub median: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p99: at(0.99),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            count: sorted.len(),
        }
    }
}

type SectionFn = fn(bool) -> Section;

/// The sections in report order, with the name `--only` selects them by.
const SECTIONS: &[(&str, SectionFn)] = &[
    ("datapath", datapath::run),
    ("packet_rate", packet_rate::run),
    ("requests", requests::run),
    ("syn_flood", syn_flood::run),
    ("failover", failover_trials::run),
    ("in_band", failover_trials::in_band::run),
    ("soak", soak::run),
    ("fleet", fleet::run),
    ("control_plane", control_plane::run),
    ("maglev", maglev::run),
];

/// Runs the sections (all, or those named with `--only a,b`), writes the
/// report and fails if any correctness check failed.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    if let Some(unknown) = only
        .iter()
        .flatten()
        .find(|name| !SECTIONS.iter().any(|(known, _)| known == name))
    {
        let names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "bench: unknown section {unknown:?}; sections: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    crate::require_root();

    let started = Instant::now();
    let mut sections = Vec::new();
    for (name, run) in SECTIONS {
        if only
            .as_ref()
            .is_some_and(|list| !list.iter().any(|n| n == name))
        {
            continue;
        }
        eprintln!("bench: {name} ...");
        let section_started = Instant::now();
        // A section that panics (a lab that cannot be built) is reported and
        // the others still run; its guards clean up while unwinding.
        let section =
            std::panic::catch_unwind(AssertUnwindSafe(|| run(quick))).unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".into());
                Section {
                    title: "failed section",
                    markdown: format!("The `{name}` section failed: {message}\n"),
                    json: serde_json::Value::Null,
                    summary: Vec::new(),
                    failures: vec![format!("{name}: {message}")],
                }
            });
        eprintln!(
            "bench: {name} took {:.1} s",
            section_started.elapsed().as_secs_f64()
        );
        sections.push((*name, section));
    }
    let (report, json) = render(quick, &sections, started.elapsed().as_secs_f64());
    print!("{report}");
    // A full run regenerates the committed report; a quick one stays in target/.
    let (md_path, json_path) = match (quick, only.is_some()) {
        (false, false) => ("BENCHMARKS.md", "BENCHMARKS.json"),
        (true, _) => ("target/bench-quick.md", "target/bench-quick.json"),
        (false, true) => ("target/bench-partial.md", "target/bench-partial.json"),
    };
    // Relative to the workspace root, wherever the bench was started from.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (md_path, json_path) = (root.join(md_path), root.join(json_path));
    let written = std::fs::write(&md_path, &report).and_then(|()| {
        std::fs::write(
            &json_path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )
    });
    match written {
        Ok(()) => eprintln!(
            "bench: wrote {} and {}",
            md_path.display(),
            json_path.display()
        ),
        Err(err) => eprintln!("bench: could not write the report: {err}"),
    }
    let failures: Vec<&String> = sections.iter().flat_map(|(_, s)| &s.failures).collect();
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    for failure in failures {
        eprintln!("bench: FAILED: {failure}");
    }
    ExitCode::FAILURE
}

fn render(quick: bool, sections: &[(&str, Section)], seconds: f64) -> (String, serde_json::Value) {
    let now = failover::events::rfc3339(std::time::SystemTime::now());
    let mut md = format!(
        "# failover benchmarks\n\nGenerated by `cargo xtask bench{}` on {now} ({}) in {seconds:.0} s. \
         Figures are medians over repetitions with their spread, next to baselines \
         measured in the same run; compare ratios, not absolute figures (shared, noisy \
         machines).\n\n## Summary\n\n| measure | ours | reference (same run) | ratio |\n|---|---:|---|---:|\n",
        if quick { " --quick" } else { "" },
        machine()
    );
    if cfg!(debug_assertions) {
        md.insert_str(
            md.find("\n\n## Summary").unwrap_or(md.len()),
            " This was a debug build (the test suite's run): userspace figures \
             (agent, Maglev, clients) are not representative.",
        );
    }
    for (_, section) in sections {
        for row in &section.summary {
            md += &format!(
                "| {} | {} | {} | {} |\n",
                row.measure, row.ours, row.reference, row.ratio
            );
        }
    }
    let mut json = serde_json::json!({
        "generated": now,
        "machine": machine(),
        "quick": quick,
        "seconds": seconds,
    });
    for (name, section) in sections {
        md += &format!("\n## {}\n\n{}", section.title, section.markdown);
        if !section.failures.is_empty() {
            md += "\n**Correctness failures:**\n\n";
            for failure in &section.failures {
                md += &format!("- {failure}\n");
            }
        }
        json[*name] = section.json.clone();
    }
    (md, json)
}

/// Kernel, CPU model and count, for the report.
pub fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("Linux {}, {cores} × {cpu}", kernel.trim())
}
