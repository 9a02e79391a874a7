//! Property-based fuzzing of the parser, validator, planner and tools: generated scripts
//! (random builder chains with hostile arguments, and random text) must never panic, must
//! finish quickly, and a policy that checks must survive the IR's JSON round trip, compile to
//! every plan and diff as unchanged against itself.
//!
//! Bounded for CI: 128 cases per property by default (a few seconds); raise with
//! `PROPTEST_CASES=100000 cargo test -p palisade-policy --release --test fuzz` for a long run.

use palisade_policy::cases::{self, Plans};
use palisade_policy::{Policy, check, diff, oci};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Script values: mostly plausible, sometimes hostile.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"10.0.0.0/8\"".to_string()),
        Just("\"10.0.0.1/8\"".to_string()),
        Just("\"2001:db8::/32\"".to_string()),
        Just("\"any\"".to_string()),
        Just("\"/etc/shadow\"".to_string()),
        Just("\"/srv/data/\"".to_string()),
        Just("\"etc\"".to_string()),
        Just("\"/a/../b\"".to_string()),
        Just("\"read\"".to_string()),
        Just("\"8000-8100\"".to_string()),
        Just("\"9-3\"".to_string()),
        Just("\"openat\"".to_string()),
        Just("\"execve\"".to_string()),
        Just("\"opnat\"".to_string()),
        Just("\"eq\"".to_string()),
        Just("\"masked_eq\"".to_string()),
        Just("\"batch\"".to_string()),
        Just("\"\"".to_string()),
        Just("\"\\u{0}\"".to_string()),
        Just("[]".to_string()),
        Just("#{}".to_string()),
        Just("#{ role: \"web\" }".to_string()),
        Just("#{ role: 1 }".to_string()),
        Just("()".to_string()),
        Just("true".to_string()),
        Just("0xff".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (-5i64..70000).prop_map(|n| n.to_string()),
        "[a-z/.:0-9-]{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

fn args() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(value(), 0..4).prop_map(|v| v.join(", ")),
        prop::collection::vec(value(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
        (0i64..8, value(), value(), value())
            .prop_map(|(i, op, a, b)| format!("{op}, [[{i}, {a}, {b}]]")),
    ]
}

const ROOTS: &[&str] = &[
    "network()",
    "network().ingress()",
    "network().egress()",
    "files()",
    "exec()",
    "seccomp(\"p\")",
    "seccomp(\"q\")",
    "sched_class(\"c\")",
    "policy(\"x\")",
];

const METHODS: &[&str] = &[
    "deny",
    "allow",
    "audit",
    "named",
    "tcp",
    "udp",
    "icmp",
    "ports",
    "allow_tcp",
    "allow_udp",
    "default_action",
    "default_deny",
    "rate_limit",
    "protocol",
    "deny_read",
    "deny_write",
    "audit_read",
    "allow_read",
    "except_binary",
    "allow_for",
    "except_uid",
    "allow_only",
    "audit_mode",
    "except_parent",
    "default_errno",
    "default_allow",
    "default_kill",
    "errno",
    "kill",
    "log",
    "trap",
    "allow_where",
    "errno_where",
    "deny_where",
    "import_oci",
    "policy",
    "nice",
    "cpu_weight",
    "binaries",
    "names",
    "uids",
    "cgroups",
    "describe",
    "owner",
    "mode",
    "nodes",
    "ingress",
    "egress",
    "nonexistent",
];

fn chain() -> impl Strategy<Value = String> {
    (
        prop::sample::select(ROOTS),
        prop::collection::vec((prop::sample::select(METHODS), args()), 0..5),
    )
        .prop_map(|(root, calls)| {
            let mut s = root.to_string();
            for (m, a) in calls {
                s.push_str(&format!(".{m}({a})"));
            }
            s.push(';');
            s
        })
}

fn script() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(chain(), 0..10),
        prop::option::of("[ -~\n]{0,40}"),
    )
        .prop_map(|(declare, chains, noise)| {
            let mut s = String::new();
            if declare {
                s.push_str("policy(\"fuzz\");\n");
            }
            for c in chains {
                s.push_str(&c);
                s.push('\n');
            }
            if let Some(n) = noise {
                s.push_str(&n);
            }
            s
        })
}

/// Everything downstream of a checked policy.
fn exercise(file: &str, src: &str) {
    let t = Instant::now();
    let c = check(file, src);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    let rendered = c.render(src);
    for d in &c.diagnostics {
        assert!(!d.message.is_empty());
        assert_eq!(d.span.file, file);
        if d.span.line > 0 {
            assert!(rendered.contains(&format!("{file}:{}:", d.span.line)));
        }
    }
    if let Some(p) = &c.policy {
        assert!(!c.has_errors());
        let back = Policy::from_json(&p.to_json().unwrap()).unwrap();
        assert_eq!(&back, p);
        let plans = Plans::of(p);
        for prof in &p.seccomp {
            let exported = oci::export_oci(prof);
            let again = oci::import_oci_as(&prof.name, &exported.to_string(), &prof.span)
                .unwrap()
                .profile;
            assert_eq!(&again, prof);
        }
        assert!(diff::diff(Some(p), p).is_empty());
        for ev in [
            "net ingress tcp 10.1.2.3 -> 10.0.0.1:22",
            "net egress udp 2001:db8::1 -> [2001:db8::2]:53",
            "file read /etc/shadow by /usr/bin/cat uid 0",
            "exec /usr/bin/nc",
            "syscall p openat",
            "sched /usr/bin/backup",
        ] {
            let e = cases::parse_event(ev).unwrap();
            let _ = cases::evaluate(&plans, &e);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn builder_chains_never_panic(src in script()) {
        exercise("fuzz.rhai", &src);
    }

    #[test]
    fn random_text_never_panics(src in "[ -~\n\t]{0,200}") {
        exercise("fuzz.rhai", &src);
    }

    #[test]
    fn case_files_never_panic(text in "((net|file|exec|syscall|sched|=>|->|ingress|tcp|read|/etc|10\\.0\\.0\\.1:80|\\[::1\\]:5|uid|by|0x1f|-1|[a-z0-9:/.]{0,6}) {0,2}){0,12}\n?") {
        let _ = cases::parse_cases("f.cases", &text);
    }

    #[test]
    fn oci_import_never_panics(json in "\\{(\"(defaultAction|syscalls|names|action|args|index|value|op|errnoRet)\"|SCMP_ACT_[A-Z]{0,5}|[\\[\\]{},:0-9\" ]){0,30}\\}") {
        let _ = oci::import_oci(&json);
    }
}
