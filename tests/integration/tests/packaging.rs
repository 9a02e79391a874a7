//! Process tier: what the Debian packages (`scripts/package.sh`) are made of. The
//! completion scripts the binaries print parse, the man pages list every subcommand, and
//! the default config files in `packaging/config/` check as shipped and with every setting
//! they show uncommented, and show every flag the daemon takes. Installing the packages
//! into a clean root is `scripts/verify-packages.sh`.

use palisade_integration::{bin, run, workspace};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const BINARIES: &[&str] = &["palisadectl", "palisade-controlplane", "palisade-noded"];

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

/// The long flags a `--help` output lists, without clap's own and `--config` itself.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            // "-o, --output <OUTPUT>" or "--listen <LISTEN>"
            let l = match l.as_bytes() {
                [b'-', c, b',', b' ', ..] if *c != b'-' => &l[4..],
                _ => l,
            };
            let flag = l.strip_prefix("--")?;
            Some(flag.split([' ', '=', '[', '<']).next()?.to_string())
        })
        .filter(|f| !["help", "version", "config", "check-config"].contains(&f.as_str()))
        .collect()
}

/// The subcommands a `--help` output lists under "Commands:", without `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn bash_completion_parses_and_offers_no_hidden_command() {
    let dir = tempfile::tempdir().unwrap();
    for b in BINARIES {
        let script = stdout(Command::new(bin(b)).args(["completion", "bash"]));
        let file = dir.path().join(b);
        std::fs::write(&file, &script).unwrap();
        run(Command::new("bash").arg("-n").arg(&file));
        assert!(
            script.contains(&format!("complete -F _{}", b.replace('-', "__"))),
            "{b}: {script}"
        );
        assert!(
            !script.contains("generate-man"),
            "{b}'s completion offers a hidden command"
        );
        for shell in ["zsh", "fish"] {
            let script = stdout(Command::new(bin(b)).args(["completion", shell]));
            assert!(script.contains(b), "{b} {shell}: {script}");
            assert!(
                !script.contains("generate-man"),
                "{b} {shell}: a hidden command"
            );
        }
    }
    let apply = stdout(Command::new(bin("palisadectl")).args(["completion", "bash"]));
    assert!(
        apply.contains("apply") && apply.contains("--rollout"),
        "{apply}"
    );
}

#[test]
fn completion_is_a_public_command_and_generate_man_is_not() {
    let help = stdout(Command::new(bin("palisadectl")).arg("--help"));
    assert!(
        subcommands(&help).contains(&"completion".to_string()),
        "{help}"
    );
    for b in BINARIES {
        let help = stdout(Command::new(bin(b)).arg("--help"));
        assert!(!help.contains("generate-man"), "{b} --help: {help}");
    }
}

#[test]
fn man_pages_list_every_subcommand_one_page_each() {
    let dir = tempfile::tempdir().unwrap();
    let help = stdout(Command::new(bin("palisadectl")).arg("--help"));
    let subs = subcommands(&help);
    assert!(
        subs.len() > 10 && subs.contains(&"apply".to_string()),
        "{help}"
    );
    let man = dir.path().join("man");
    run(Command::new(bin("palisadectl"))
        .arg("generate-man")
        .arg(&man));
    let page = std::fs::read_to_string(man.join("palisadectl.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains("\n.TH "), "{page}");
    for s in &subs {
        assert!(
            page.contains(&format!("palisadectl\\-{}(1)", s.replace('-', "\\-"))),
            "palisadectl.1 does not list {s}:\n{page}"
        );
        assert!(
            man.join(format!("palisadectl-{s}.1")).exists(),
            "no page for {s}"
        );
    }
    for nested in ["pki-init", "rollout-status", "audit-tail", "nodes-label"] {
        assert!(
            man.join(format!("palisadectl-{nested}.1")).exists(),
            "no page for {nested}"
        );
    }
    let pages: Vec<_> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !pages
            .iter()
            .any(|p| p.contains("generate") || p.contains("-help.")),
        "pages for hidden or help commands: {pages:?}"
    );
    let apply = std::fs::read_to_string(man.join("palisadectl-apply.1")).unwrap();
    assert!(apply.contains("\\-\\-rollout"), "{apply}");

    for (b, sub) in [("palisade-noded", "run"), ("palisade-controlplane", "")] {
        let man = dir.path().join(b);
        run(Command::new(bin(b)).arg("generate-man").arg(&man));
        assert!(man.join(format!("{b}.1")).exists());
        if !sub.is_empty() {
            assert!(man.join(format!("{b}-{sub}.1")).exists());
        }
    }
}

/// The config file with every `# key = value` line uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_config(cmd: &mut Command, file: &Path) {
    let out = run(cmd.arg("--config").arg(file).arg("--check-config"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("configuration ok"), "{text}");
}

#[test]
fn shipped_config_files_check_and_show_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let daemons: [(&str, &[&str], &str); 2] = [
        ("palisade-controlplane", &[], "controlplane.toml"),
        ("palisade-noded", &["run"], "noded.toml"),
    ];
    for (b, sub, file) in daemons {
        let shipped = workspace().join("packaging/config").join(file);
        let text = std::fs::read_to_string(&shipped).unwrap();
        let daemon = || {
            let mut c = Command::new(bin(b));
            c.args(sub);
            c
        };
        // As shipped every setting is commented out; the node's name must still be given.
        let mut as_shipped = daemon();
        if b == "palisade-noded" {
            as_shipped.args(["--name", "node-1"]);
        }
        check_config(&mut as_shipped, &shipped);
        let all = dir.path().join(file);
        std::fs::write(&all, uncommented(&text)).unwrap();
        check_config(&mut daemon(), &all);

        let help = stdout(daemon().arg("--help"));
        let flags = long_flags(&help);
        assert!(flags.len() > 5, "{help}");
        let shown: BTreeSet<String> = uncommented(&text)
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_string()))
            .collect();
        let missing: Vec<_> = flags.difference(&shown).collect();
        assert!(
            missing.is_empty(),
            "packaging/config/{file} does not show {missing:?}"
        );
    }
}
