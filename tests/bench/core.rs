#![allow(clippy::expect_used, clippy::indexing_slicing)] // a benchmark binary, not filter code

//! Microbenchmarks of the pure core (`make bench` runs them): body parsing by size, the
//! header/body check, and the policy decision. Plain `std` timing, no extra dependencies:
//! each case runs for a fixed wall time after a warm-up and reports the median of batches.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_guard::config::Config;
use mcp_guard::gate::{BodyRule, Gate, RequestHead};
use mcp_guard::jsonrpc::parse_body;

fn call_body(tool: &str, id: u64, text_len: usize) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"{}","n":[1,2,3],"flag":true}},"_meta":{{"progressToken":{id}}}}}}}"#,
        "x".repeat(text_len)
    )
    .into_bytes()
}

/// Runs `f` in batches for about `budget`; returns the median time per call.
fn measure(budget: Duration, mut f: impl FnMut()) -> Duration {
    let warm = Instant::now();
    let mut per_batch = 1u32;
    while warm.elapsed() < budget / 10 {
        for _ in 0..per_batch {
            f();
        }
        per_batch = per_batch.saturating_mul(2);
    }
    let batch = per_batch.max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        samples.push(t.elapsed() / batch);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, bytes: usize, t: Duration) {
    let ns = t.as_nanos() as f64;
    let mbps = if bytes > 0 {
        bytes as f64 / ns * 1e3
    } else {
        0.0
    };
    println!("| {name:<44} | {:>10.0} ns | {:>8.0} MB/s |", ns, mbps);
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    println!("| case | per op | throughput |\n|---|---:|---:|");
    for (label, text_len) in [
        ("300 B", 150),
        ("4 KiB", 3900),
        ("64 KiB", 65_300),
        ("1 MiB", 1_048_000),
    ] {
        let body = call_body("echo", 7, text_len);
        let t = measure(budget, || {
            black_box(parse_body(black_box(&body)).is_ok());
        });
        report(
            &format!("parse tools/call {label} ({} B)", body.len()),
            body.len(),
            t,
        );
    }

    let head = {
        let mut h = RequestHead::default();
        for (k, v) in [
            (":method", "POST"),
            (":path", "/mcp"),
            ("content-type", "application/json"),
        ] {
            h.observe(k, v.as_bytes());
        }
        h
    };
    let tools: Vec<String> = (0..100).map(|i| format!("team{i}_*")).collect();
    for (label, config) in [
        ("gate: allow all", r#"{}"#.to_owned()),
        ("gate: 3 exact + 1 glob", r#"{"policy":{"allow":{"tools":["echo","add","search","db_*"]},"deny":{"tools":["db_drop"]}}}"#.to_owned()),
        ("gate: 100 glob patterns", format!(r#"{{"policy":{{"allow":{{"tools":{}}}}}}}"#, serde_json::to_string(&tools).unwrap_or_default())),
    ] {
        let config = Config::from_json(config.as_bytes()).expect("bench config");
        let gate = Gate { config: &config };
        let bodies: Vec<Vec<u8>> = (0..64).map(|i| call_body(if i % 2 == 0 { "team99_x" } else { "echo" }, i, 150)).collect();
        let mut i = 0;
        let t = measure(budget, || {
            i = (i + 1) % bodies.len();
            black_box(gate.on_body(BodyRule::JsonRpc, &head, black_box(&bodies[i])).is_ok());
        });
        report(&format!("{label}, 300 B call"), bodies[0].len(), t);
    }
}
