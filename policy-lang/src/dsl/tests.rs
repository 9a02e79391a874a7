use crate::check;
use crate::ir::{Action, Direction, Mode};

const GOOD: &str = r#"
policy("block-lab").describe("lab").owner("sec").mode("enforce").nodes(#{ role: "lab" });

network()
    .ingress()
    .deny(["10.200.0.2/32", "fd00:200::2/128"])
    .named("lab-peer");
network().egress().audit("192.0.2.7");
"#;

#[test]
fn builds_ir_from_a_good_policy() {
    let c = check("p.rhai", GOOD);
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let p = c.policy.unwrap();
    assert_eq!(p.name, "block-lab");
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.selector.get("role").map(String::as_str), Some("lab"));
    assert_eq!(p.network.rules.len(), 2);
    let r = &p.network.rules[0];
    assert_eq!(r.name, "lab-peer");
    assert_eq!((r.direction, r.action), (Direction::Ingress, Action::Deny));
    assert_eq!(r.cidrs.len(), 2);
    assert_eq!((r.span.line, r.span.col), (6, 6));
    let r2 = &p.network.rules[1];
    assert_eq!(r2.name, "egress-audit-line8");
    assert_eq!(r2.cidrs[0].to_string(), "192.0.2.7/32");
}

#[test]
fn syntax_error_has_line_and_column() {
    let c = check(
        "bad.rhai",
        "policy(\"x\");\nnetwork().ingress().deny([\"10.0.0.0/8\"];\n",
    );
    assert!(c.has_errors());
    let d = &c.diagnostics[0];
    assert_eq!(d.span.file, "bad.rhai");
    assert_eq!(d.span.line, 2);
    assert!(d.span.col > 0);
    assert!(d.message.starts_with("syntax error"), "{}", d.message);
}

#[test]
fn reports_every_bad_cidr_with_hints() {
    let src = "policy(\"x\");\nnetwork().ingress().deny([\"10.0.0.1/8\", \"nope\"]);\nnetwork().ingress().deny(\"300.1.1.1\");\n";
    let c = check("p.rhai", src);
    let errs: Vec<_> = c
        .diagnostics
        .iter()
        .map(|d| (d.span.line, d.message.clone(), d.hint.clone()))
        .collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(errs[0].2.as_deref(), Some("did you mean \"10.0.0.0/8\"?"));
    assert!(errs[1].1.contains("nope"));
    assert_eq!(errs[2].0, 3);
    assert!(c.policy.is_none());
}

#[test]
fn unknown_function_suggests_builtin() {
    let c = check(
        "p.rhai",
        "policy(\"x\");\nnetwork().ingres().deny(\"10.0.0.0/8\");\n",
    );
    let d = &c.diagnostics[0];
    assert_eq!(d.span.line, 2);
    assert_eq!(d.hint.as_deref(), Some("did you mean `ingress`?"), "{d:?}");
}

#[test]
fn missing_policy_and_direction_are_errors() {
    let c = check("p.rhai", "network().deny(\"10.0.0.0/8\");");
    let msgs: Vec<_> = c.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.contains("needs a direction")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("declares no policy")),
        "{msgs:?}"
    );
}

#[test]
fn duplicate_prefix_is_a_warning_not_an_error() {
    let src = "policy(\"x\");\nnetwork().ingress().allow(\"10.0.0.0/8\");\nnetwork().ingress().deny(\"10.0.0.0/8\");\n";
    let c = check("p.rhai", src);
    assert!(!c.has_errors());
    assert_eq!(c.diagnostics.len(), 1);
    assert!(c.diagnostics[0].hint.as_ref().unwrap().contains("(deny)"));
}

#[test]
fn hostile_scripts_are_stopped_quickly() {
    for src in [
        "policy(\"x\"); loop { }",
        "policy(\"x\"); fn f(n) { f(n + 1) } f(0);",
        "policy(\"x\"); let s = \"xxxxxxxxxx\"; loop { s += s; }",
        "import \"foo\" as foo; policy(\"x\");",
        "policy(\"x\"); eval(\"1\");",
    ] {
        let t = std::time::Instant::now();
        let c = check("h.rhai", src);
        assert!(c.has_errors(), "{src}: accepted");
        assert!(
            t.elapsed().as_millis() < 1000,
            "{src}: took {:?}",
            t.elapsed()
        );
    }
}

mod network {
    use crate::check;
    use crate::ir::{Action, Direction, PortRange, Protocol};

    const NET: &str = r#"policy("net");
network().ingress().deny(["203.0.113.0/24", "2001:db8::/32"]).named("bad-nets");
network().ingress().deny("10.0.0.0/8").tcp().ports([22, "8000-8100"]).named("no-ssh");
network().ingress().allow("any").tcp().ports([80, 443]);
network().ingress().audit("198.51.100.0/24").udp();
network().ingress().allow_tcp([8443]);
network().ingress().allow_udp(53);
network().ingress().deny("any").icmp();
network().ingress().default_action("deny");
network().ingress().rate_limit("0.0.0.0/0", 1000).named("flood");
network().egress().deny("192.0.2.0/24").tcp().ports(25);
network().egress().default_audit();
"#;

    #[test]
    fn contract_network_builds_ir() {
        let c = check("n.rhai", NET);
        assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
        let p = c.policy.unwrap();
        let r = &p.network.rules;
        assert_eq!(r.len(), 8);
        assert_eq!(r[1].name, "no-ssh");
        assert_eq!(r[1].protocol, Protocol::Tcp);
        assert_eq!(
            r[1].ports,
            vec![
                PortRange {
                    first: 22,
                    last: 22
                },
                PortRange {
                    first: 8000,
                    last: 8100
                }
            ]
        );
        assert!(r[2].cidrs.is_empty());
        assert_eq!(r[3].protocol, Protocol::Udp);
        assert_eq!((r[4].action, r[4].protocol), (Action::Allow, Protocol::Tcp));
        assert!(r[4].cidrs.is_empty());
        assert_eq!(
            r[5].ports,
            vec![PortRange {
                first: 53,
                last: 53
            }]
        );
        assert_eq!(r[6].protocol, Protocol::Icmp);
        assert_eq!(r[7].direction, Direction::Egress);
        assert_eq!(p.network.default_ingress, Some(Action::Deny));
        assert_eq!(p.network.default_egress, Some(Action::Audit));
        assert_eq!(p.network.rate_limits.len(), 1);
        assert_eq!(p.network.rate_limits[0].name, "flood");
        assert_eq!(p.network.rate_limits[0].packets_per_sec, 1000);
        // ids are unique across kinds, in source order
        let mut ids: Vec<u32> = r.iter().map(|r| r.id).collect();
        ids.push(p.network.rate_limits[0].id);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 9);
    }

    fn messages(src: &str) -> Vec<(u32, String, Option<String>)> {
        check("n.rhai", src)
            .diagnostics
            .into_iter()
            .map(|d| (d.span.line, d.message, d.hint))
            .collect()
    }

    #[test]
    fn network_diagnostics_all_at_once() {
        let src = r#"policy("x");
network().ingress().deny("any").tcp().ports([0, 70000, "9-3", "abc"]);
network().ingress().deny("10.0.0.0/8").ports(22);
network().ingress().deny("10.0.0.0/8").icmp().ports(22);
network().egress().rate_limit("0.0.0.0/0", 10);
network().ingress().rate_limit("0.0.0.0/0", 0);
network().ingress().default_action("dney");
network().ingress().protocol("tpc");
network().ingress().deny(["any", "10.0.0.0/8"]);
"#;
        let m = messages(src);
        let has =
            |line: u32, text: &str| m.iter().any(|(l, msg, _)| *l == line && msg.contains(text));
        assert!(has(2, "port 0 is out of range"), "{m:?}");
        assert!(has(2, "port 70000 is out of range"), "{m:?}");
        assert!(has(2, "\"9-3\" is empty"), "{m:?}");
        assert!(has(2, "invalid port"), "{m:?}");
        assert!(has(3, "ports need a tcp or udp rule"), "{m:?}");
        assert!(has(4, "protocol is icmp"), "{m:?}");
        assert!(has(5, "ingress only"), "{m:?}");
        assert!(has(6, "out of range"), "{m:?}");
        assert!(has(7, "unknown action"), "{m:?}");
        assert!(
            m.iter()
                .any(|(_, _, h)| h.as_deref() == Some("did you mean \"deny\"?"))
        );
        assert!(has(8, "unknown protocol"), "{m:?}");
        assert!(has(9, "\"any\" is listed together"), "{m:?}");
    }

    #[test]
    fn default_keyword_gets_a_hint() {
        let m = messages("policy(\"x\");\nnetwork().ingress().default(\"deny\");\n");
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].2.as_ref().unwrap().contains("default_action"), "{m:?}");
    }

    #[test]
    fn shadowing_respects_protocol_and_ports() {
        let src = r#"policy("x");
network().ingress().deny("10.0.0.0/8").tcp();
network().ingress().allow("10.0.0.0/8").tcp().ports(22);
network().ingress().allow("10.0.0.0/8").udp().ports(22);
"#;
        let m = messages(src);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].0, 3);
    }
}

mod files_exec {
    use crate::check;
    use crate::ir::{Action, ExecMode, FileOp};

    const FILES: &str = r#"policy("f");
files().deny_read("/etc/shadow").except_binary("/usr/sbin/sshd").except_uid(0).named("shadow");
files().deny_write("/etc").allow_for("/usr/bin/apt");
files().audit_read("/srv/secrets/");
files().deny("/srv/data", ["read", "write", "exec"]);
files().audit("/srv/data2", ["write"]);
files().allow_read(["/srv/data/public", "/srv/data/www"]).named("public");
exec().deny(["/usr/bin/nc", "/usr/bin/ncat"]).except_uid(0).except_parent("/usr/sbin/sshd").named("no-nc");
exec().audit(["/usr/bin/curl"]);
exec().allow_only(["/usr/bin/bash", "/usr/bin/ls", "/usr/local/bin/palisade-noded"]);
exec().allow_only(["/usr/bin/bash"]).audit_mode();
"#;

    #[test]
    fn contract_files_and_exec_build_ir() {
        let c = check("f.rhai", FILES);
        assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
        let p = c.policy.unwrap();
        let f = &p.files;
        assert_eq!(f.len(), 7);
        assert_eq!(f[0].name, "shadow");
        assert_eq!(f[0].ops, vec![FileOp::Read]);
        assert_eq!(f[0].except_binaries, vec!["/usr/sbin/sshd"]);
        assert_eq!(f[0].except_uids, vec![0]);
        assert_eq!(f[1].except_binaries, vec!["/usr/bin/apt"]);
        assert_eq!(f[2].path, "/srv/secrets/");
        assert_eq!(f[2].action, Action::Audit);
        assert_eq!(f[3].ops, vec![FileOp::Read, FileOp::Write, FileOp::Exec]);
        assert_eq!(
            (f[5].name.as_str(), f[6].name.as_str()),
            ("public", "public-2")
        );
        assert!(f.iter().all(|r| r.subtree));
        let e = &p.exec;
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].name, "no-nc");
        assert_eq!(e[0].except_parents, vec!["/usr/sbin/sshd"]);
        assert_eq!((e[1].mode, e[1].action), (ExecMode::Deny, Action::Audit));
        assert_eq!(
            (e[2].mode, e[2].action),
            (ExecMode::AllowOnly, Action::Deny)
        );
        assert_eq!(
            (e[3].mode, e[3].action),
            (ExecMode::AllowOnly, Action::Audit)
        );
    }

    #[test]
    fn files_and_exec_diagnostics() {
        let src = r#"policy("x");
files().deny_read("etc/shadow");
files().deny("/srv/../etc", ["read"]);
files().deny("/srv", ["raed"]);
files().deny_read("/etc/shadow").except_binary("sshd");
exec().allow_only(["/usr/bin/bash"]);
exec().deny(["/usr/local/bin/palisade-noded"]);
files().deny("/usr/local/bin", ["exec"]);
files().deny_read("/etc/shadow").except_uid(-1);
exec().deny(["/usr/bin/"]);
exec().deny(["/usr/bin/nc"]).audit_mode();
"#;
        let c = check("x.rhai", src);
        let m: Vec<_> = c
            .diagnostics
            .iter()
            .map(|d| (d.span.line, d.message.clone(), d.hint.clone()))
            .collect();
        let has =
            |line: u32, text: &str| m.iter().any(|(l, msg, _)| *l == line && msg.contains(text));
        assert!(has(2, "relative path"), "{m:?}");
        assert!(m.iter().any(|(_, _, h)| h.as_deref()
            == Some("paths must be absolute: did you mean \"/etc/shadow\"?")));
        assert!(has(3, "\"..\""), "{m:?}");
        assert!(has(4, "unknown file operation"), "{m:?}");
        assert!(has(5, "relative path"), "{m:?}");
        assert!(has(6, "block the node daemon"), "{m:?}");
        assert!(has(7, "node daemon"), "{m:?}");
        assert!(has(8, "node daemon"), "{m:?}");
        assert!(has(9, "uid -1 is out of range"), "{m:?}");
        assert!(has(10, "names a directory"), "{m:?}");
        assert!(has(11, "applies to an allow list"), "{m:?}");
    }

    #[test]
    fn audit_mode_policy_does_not_lock_out() {
        let c = check(
            "x.rhai",
            "policy(\"x\").mode(\"audit\");\nexec().allow_only([\"/usr/bin/bash\"]);\n",
        );
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        let c = check(
            "x.rhai",
            "policy(\"x\");\nexec().allow_only([\"/usr/bin/bash\"]).except_uid(0);\n",
        );
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
    }

    #[test]
    fn same_path_twice_is_a_warning() {
        let c = check(
            "x.rhai",
            "policy(\"x\");\nfiles().deny_read(\"/etc\");\nfiles().audit(\"/etc/\", [\"read\"]);\n",
        );
        assert!(!c.has_errors());
        assert_eq!(c.diagnostics.len(), 1, "{:?}", c.diagnostics);
        assert_eq!(c.diagnostics[0].span.line, 3);
    }
}

mod seccomp {
    use crate::check;
    use crate::ir::{ArgCmp, CmpOp, SeccompAction};

    #[test]
    fn contract_seccomp_builds_ir() {
        let src = r#"policy("s");
seccomp("web-default")
    .default_errno(1)
    .allow(["read", "write", "openat", "close", "execve"])
    .deny(["mkdir"])
    .errno(["unshare", "mount"], 1)
    .kill(["ptrace"])
    .log(["personality"])
    .allow_where("socket", [[0, "eq", 2]])
    .errno_where("socket", 97, [[0, "eq", 10]])
    .allow_where("clone", [[0, "masked_eq", 0xff, 0]]);
seccomp("imported").import_oci(`{ "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [ { "names": ["reboot"], "action": "SCMP_ACT_ERRNO" } ] }`);
"#;
        let c = check("s.rhai", src);
        assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
        let p = c.policy.unwrap();
        let w = &p.seccomp[0];
        assert_eq!(w.default_action, SeccompAction::Errno(1));
        assert_eq!(w.rules.len(), 8);
        assert_eq!(w.rules[1].action, SeccompAction::Errno(1));
        assert_eq!(w.rules[3].action, SeccompAction::Kill);
        assert_eq!(
            w.rules[5].args,
            vec![ArgCmp {
                index: 0,
                op: CmpOp::Eq,
                value: 2
            }]
        );
        assert_eq!(w.rules[6].action, SeccompAction::Errno(97));
        assert_eq!(
            w.rules[7].args,
            vec![ArgCmp {
                index: 0,
                op: CmpOp::MaskedEq { mask: 0xff },
                value: 0
            }]
        );
        let i = &p.seccomp[1];
        assert_eq!(i.name, "imported");
        assert_eq!(i.default_action, SeccompAction::Allow);
        assert_eq!(i.rules[0].syscalls, vec!["reboot"]);
        assert_eq!(i.rules[0].span.line, 12);
    }

    #[test]
    fn seccomp_diagnostics() {
        let src = r#"policy("x");
seccomp("a").default_allow().deny(["mkdri", "opnat"]);
seccomp("b").default_errno(5000);
seccomp("c").allow_where("socket", [[7, "eq", 2]]);
seccomp("d").allow_where("socket", [[0, "equals", 2]]);
seccomp("e").allow_where("socket", [[0, "masked_eq", 2]]);
seccomp("f").default_kill();
seccomp("g").default_allow().kill(["execve"]);
seccomp("h").import_oci("{ not json");
seccomp("a");
seccomp("i").default_allow().default_kill();
seccomp("j").allow(["read"]).deny(["read"]);
"#;
        let c = check("x.rhai", src);
        let m: Vec<_> = c
            .diagnostics
            .iter()
            .map(|d| {
                (
                    d.span.line,
                    d.message.clone(),
                    d.hint.clone().unwrap_or_default(),
                )
            })
            .collect();
        let has = |line: u32, text: &str| {
            m.iter()
                .any(|(l, msg, h)| *l == line && (msg.contains(text) || h.contains(text)))
        };
        assert!(has(2, "unknown syscall \"mkdri\""), "{m:?}");
        assert!(has(2, "did you mean \"mkdir\"?"), "{m:?}");
        assert!(has(2, "did you mean \"openat\"?"), "{m:?}");
        assert!(has(3, "errno 5000 is out of range"), "{m:?}");
        assert!(has(4, "argument index 7"), "{m:?}");
        assert!(has(5, "unknown comparison"), "{m:?}");
        assert!(has(6, "takes 2 number(s)"), "{m:?}");
        assert!(has(7, "denies execve"), "{m:?}");
        assert!(has(8, "denies execve"), "{m:?}");
        assert!(has(9, "cannot import"), "{m:?}");
        assert!(has(10, "declared twice"), "{m:?}");
        assert!(has(11, "set twice"), "{m:?}");
        assert!(has(12, "already decided"), "{m:?}");
    }
}

#[test]
fn every_builtin_is_documented_with_an_example() {
    let doc = include_str!("../../../docs/policy-language.md");
    for b in super::BUILTINS {
        assert!(
            doc.contains(&format!("`{b}`")),
            "{b} is not in the builtin index"
        );
        assert!(
            doc.contains(&format!(".{b}(")) || doc.contains(&format!("{b}(")),
            "{b} has no example in docs/policy-language.md"
        );
    }
}

#[test]
fn the_documented_policies_check() {
    let doc = include_str!("../../../docs/policy-language.md");
    let mut n = 0;
    for block in doc.split("```rhai\n").skip(1) {
        let src = block.split("```").next().unwrap();
        if src.starts_with("policy(") {
            let c = crate::check("doc.rhai", src);
            assert!(c.diagnostics.is_empty(), "{src}\n{}", c.render(src));
            n += 1;
        }
    }
    assert!(n >= 2);
}
