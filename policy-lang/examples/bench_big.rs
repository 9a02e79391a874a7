//! Benchmark: validating and compiling a policy with 100,000 CIDRs and 10,000 file rules.
//!
//! ```sh
//! cargo run --release -p palisade-policy --example bench_big -- blocklist   # 100 rules x 1000 CIDRs
//! cargo run --release -p palisade-policy --example bench_big -- rules       # 100,000 one-CIDR rules
//!                                                                            # (refused: the datapath holds 16,384 rules)
//! cargo run --release -p palisade-policy --example bench_big -- baseline    # the same IR read from JSON
//! ```
//!
//! or all three, each in its own process with `/usr/bin/time -v`, via
//! `scripts/bench-policy-lang.sh`. Each variant prints the source size, the time of each
//! phase (evaluate + validate, then compile every plan) and the process's peak resident
//! memory (`VmHWM`). The baseline is the cheapest possible way to obtain the same IR: parse its
//! JSON with serde, as a node does; the report is a ratio against it.
//!
//! CIDRs are spread so every map stays within its capacity: 50,000 IPv4 and 25,000 IPv6
//! prefixes on ingress, 25,000 IPv4 prefixes on egress.

use palisade_policy::cases::Plans;
use palisade_policy::dsl::Limits;
use palisade_policy::{Policy, check_with};
use std::fmt::Write as _;
use std::time::Instant;

const CIDRS: usize = 100_000;
const FILE_RULES: usize = 10_000;

fn cidr(i: usize) -> String {
    if i < 50_000 {
        format!("10.{}.{}.0/24", i / 256, i % 256)
    } else if i < 75_000 {
        let j = i - 50_000;
        format!("2001:db8:{:x}:{:x}::/64", j / 256, j % 256)
    } else {
        let j = i - 75_000;
        format!("172.{}.{}.0/24", 16 + j / 256, j % 256)
    }
}

fn direction(i: usize) -> &'static str {
    if i < 75_000 { "ingress" } else { "egress" }
}

/// The policy's source. `per_rule`: CIDRs per network rule (1 or 1000).
fn source(per_rule: usize) -> String {
    let mut s = String::with_capacity(8 << 20);
    s.push_str("policy(\"bench-big\").describe(\"100k CIDRs, 10k file rules\");\n");
    let mut i = 0;
    while i < CIDRS {
        let dir = direction(i);
        let mut list = Vec::with_capacity(per_rule);
        while list.len() < per_rule && i < CIDRS && direction(i) == dir {
            list.push(format!("\"{}\"", cidr(i)));
            i += 1;
        }
        let _ = writeln!(s, "network().{dir}().deny([{}]);", list.join(","));
    }
    for f in 0..FILE_RULES {
        let op = ["read", "write", "exec"][f % 3];
        let _ = writeln!(
            s,
            "files().deny_{op}(\"/srv/bench/d{}/f{}\").except_uid(0);",
            f / 100,
            f
        );
    }
    s
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let mode = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "blocklist".into());
    let per_rule = if mode == "rules" { 1 } else { 1000 };
    let src = source(per_rule);

    // Every variant obtains the same IR first (the baseline from its JSON, written here and
    // read back after dropping everything else).
    let t = Instant::now();
    let checked = check_with("bench.rhai", &src, &Limits::large());
    let check_ms = ms(t);
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == palisade_policy::Severity::Error)
        .map(|d| d.short())
        .collect();
    if !errors.is_empty() {
        // One rule per CIDR is more rules than the network datapath's rule table holds: the
        // validator refuses it (that is the capacity check at work); report how fast.
        println!("{mode}: refused at validation: {}", errors.join("; "));
        println!(
            "RESULT {mode} check_ms={check_ms:.1} compile_ms=0 total_ms={check_ms:.1} peak_rss_mib={:.1} refused=1",
            peak_rss_kib() as f64 / 1024.0
        );
        return;
    }
    let policy = checked.policy.expect("policy");

    if mode == "baseline" {
        let json = policy.to_json().unwrap();
        drop(policy);
        let t = Instant::now();
        let back = Policy::from_json(&json).unwrap();
        let parse_ms = ms(t);
        println!(
            "baseline: IR JSON {} bytes, serde parse {parse_ms:.1} ms ({} net rules, {} file rules)",
            json.len(),
            back.network.rules.len(),
            back.files.len()
        );
        println!("RESULT baseline parse_ms={parse_ms:.1}");
        return;
    }
    // The validator's share of check_ms (it runs inside check; run it again to time it).
    let t = Instant::now();
    let _ = palisade_policy::validate::validate(&policy);
    let validate_ms = ms(t);
    let t = Instant::now();
    let plans = Plans::of(&policy);
    let compile_ms = ms(t);
    let net_entries = plans.net.ingress.len() + plans.net.egress.len();
    println!(
        "{mode}: source {:.1} MB, {} net rules, {} file rules -> {} prefix entries, {} file entries",
        src.len() as f64 / 1e6,
        policy.network.rules.len(),
        policy.files.len(),
        net_entries,
        plans.files.files.len()
    );
    println!(
        "RESULT {mode} check_ms={check_ms:.1} (of which validate_ms={validate_ms:.1}) compile_ms={compile_ms:.1} total_ms={:.1} peak_rss_mib={:.1}",
        check_ms + compile_ms,
        peak_rss_kib() as f64 / 1024.0
    );
}
