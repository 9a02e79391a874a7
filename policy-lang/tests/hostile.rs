//! Hostile scripts: each is refused with a clear error, well under a second.

use palisade_policy::check;
use std::time::{Duration, Instant};

/// Checks `src`, asserting it is refused within `within` with a diagnostic containing
/// `want`; returns the message.
fn refused(src: &str, want: &str) -> String {
    let within = Duration::from_millis(1000);
    let t = Instant::now();
    let c = check("hostile.rhai", src);
    let src = &src[..src.len().min(120)];
    let took = t.elapsed();
    assert!(c.has_errors(), "accepted: {src}");
    assert!(took < within, "took {took:?}: {src}");
    let msgs: Vec<String> = c.diagnostics.iter().map(|d| d.short()).collect();
    assert!(
        msgs.iter().any(|m| m.contains(want)),
        "{src}: expected {want:?} in {msgs:?}"
    );
    eprintln!("{took:>10?}  {}", msgs.join(" | "));
    msgs.join("\n")
}

#[test]
fn endless_loops() {
    // Whichever limit trips first (wall time or operations) depends on the machine's speed;
    // both say why.
    refused("policy(\"x\");\nloop { }", "loop for long");
    refused("policy(\"x\");\nwhile true { let a = 1; }", "loop for long");
    refused(
        "policy(\"x\");\nfor i in 0..1000000000 { network().ingress().deny(\"10.0.0.0/8\"); }",
        "hostile.rhai:2",
    );
}

#[test]
fn deep_recursion() {
    refused(
        "policy(\"x\");\nfn f(n) { f(n + 1) }\nf(0);",
        "recursed too deeply",
    );
    // Mutual recursion too.
    refused(
        "policy(\"x\");\nfn a(n) { b(n) }\nfn b(n) { a(n) }\na(0);",
        "recursed too deeply",
    );
    // Deeply nested expressions are refused by the parser.
    let nested = format!(
        "policy(\"x\");\nlet a = {}1{};",
        "(".repeat(500),
        ")".repeat(500)
    );
    refused(&nested, "syntax error");
}

#[test]
fn hundred_megabyte_string() {
    refused(
        "policy(\"x\");\nlet s = \"x\";\nlet t = s.pad(100000000, \"x\");",
        "larger than a policy may build",
    );
    refused(
        "policy(\"x\");\nlet s = \"xxxxxxxxxxxxxxxx\";\nloop { s += s; }",
        "larger than a policy may build",
    );
    refused(
        "policy(\"x\");\nlet a = [];\na.pad(100000000, 0);",
        "larger than a policy may build",
    );
    // A 100 MB source file is refused before it is parsed.
    let mut big = String::from("policy(\"x\");\n// ");
    big.push_str(&"x".repeat(100 << 20));
    refused(&big, "source is");
}

#[test]
fn import_and_eval() {
    let m = refused("import \"/etc/passwd\" as p;\npolicy(\"x\");", "import");
    assert!(m.contains("not available in policies"), "{m}");
    let m = refused("policy(\"x\");\neval(\"1\");", "eval");
    assert!(m.contains("not available in policies"), "{m}");
    let m = refused(
        "policy(\"x\");\nlet f = \"eval\";\ncall(f, \"1\");",
        "hostile.rhai:3",
    );
    assert!(!m.is_empty());
}
