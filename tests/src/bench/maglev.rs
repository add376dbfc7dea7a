//! Userspace Maglev table build time per backend count.

use std::net::Ipv4Addr;

use failover::decide::maglev::{Member, build, is_prime};

use super::{Row, Section, Spread};

/// Builds each table a few times and reports the median and spread.
pub fn run(quick: bool) -> Section {
    let builds = if quick { 3 } else { 7 };
    let mut md = format!(
        "Median of {builds} builds of one table in the agent's code.\n\n\
         | backends | table size | median ms | min–max ms |\n|---:|---:|---:|---:|\n"
    );
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for n in [10usize, 100, 1_000, 10_000] {
        // At least ~100 slots per backend for even shares, prime.
        let mut size = (n as u32 * 100).max(failover::decide::maglev::DEFAULT_TABLE_SIZE);
        while !is_prime(size) {
            size += 1;
        }
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                address: Ipv4Addr::from(0xc633_6400u32 + i as u32).into(),
                port: 8080,
                weight: 1,
            })
            .collect();
        let samples: Vec<f64> = (0..builds)
            .map(|_| {
                let started = std::time::Instant::now();
                let table = build(&members, size);
                assert_eq!(table.len(), size as usize);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let s = Spread::of(&samples);
        md += &format!(
            "| {n} | {size} | {:.2} | {:.2}–{:.2} |\n",
            s.median, s.min, s.max
        );
        if n == 1_000 || n == 10_000 {
            summary.push(Row {
                measure: format!("Maglev table build, {n} backends ({size} slots)"),
                ours: format!("{:.1} ms", s.median),
                reference: "–".into(),
                ratio: "–".into(),
            });
        }
        rows.push(serde_json::json!({"backends": n, "table_size": size, "median_ms": s.median, "samples_ms": samples}));
    }
    Section {
        title: "Maglev table build (userspace)",
        markdown: md,
        json: serde_json::Value::Array(rows),
        summary,
        failures: Vec::new(),
    }
}
