//! Process tier: ARCHITECTURE.md's code map is the folder tree. Every source file in the
//! repository appears in it, and every path it names exists.
//!
//! The code map is a nested Markdown list: each level indents by two spaces, and a bullet's
//! names are the backticked paths at its start, before the first `:` and outside
//! parentheses (`- \`a.rs\`, \`b.rs\` (what b is): what they are`). A name ending in `/` is
//! a folder; the bullets below it are relative to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What counts as a source file: what a reader needs the map to find.
const SOURCE_EXTENSIONS: &[&str] = &["rs", "c", "h", "sh", "proto"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The code map's section of ARCHITECTURE.md.
fn code_map(architecture: &str) -> &str {
    let start = architecture
        .find("\n## Code map\n")
        .expect("ARCHITECTURE.md has a '## Code map' section");
    let rest = &architecture[start + 1..];
    let end = rest[3..].find("\n## ").map(|i| i + 3).unwrap_or(rest.len());
    &rest[..end]
}

/// The names a bullet line introduces (see the module docs).
fn bullet_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0i32;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => break,
            '`' => {
                let rest = &text[i + 1..];
                let Some(len) = rest.find('`') else { break };
                if depth == 0 {
                    names.push(rest[..len].to_string());
                }
                for _ in 0..=len {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    names
}

/// Every path the code map names, relative to the repository root.
fn mapped_paths(map: &str) -> Result<Vec<String>, String> {
    let mut folders: Vec<String> = Vec::new();
    let mut paths = Vec::new();
    for (n, line) in map.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let Some(item) = line.trim_start().strip_prefix("- ") else {
            continue;
        };
        if indent % 2 != 0 {
            return Err(format!(
                "code map line {}: indent {indent} is not a multiple of 2: {line}",
                n + 1
            ));
        }
        let level = indent / 2;
        if level > folders.len() {
            return Err(format!(
                "code map line {}: indented below a bullet that is not a folder: {line}",
                n + 1
            ));
        }
        folders.truncate(level);
        let names = bullet_names(item);
        if names.is_empty() {
            return Err(format!(
                "code map line {}: a bullet without a backticked path: {line}",
                n + 1
            ));
        }
        let prefix: String = folders.concat();
        for name in &names {
            paths.push(format!("{prefix}{name}"));
        }
        if let [one] = names.as_slice() {
            if one.ends_with('/') {
                folders.push(one.clone());
            }
        }
    }
    Ok(paths)
}

fn tracked_sources(root: &Path) -> BTreeSet<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .output()
        .expect("git ls-files (the tidy test needs git and a checkout)");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 paths")
        .lines()
        .filter(|p| {
            Path::new(p)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SOURCE_EXTENSIONS.contains(&e))
        })
        .filter(|p| root.join(p).exists())
        .map(str::to_string)
        .collect()
}

#[test]
fn bullet_names_skip_descriptions() {
    assert_eq!(bullet_names("`a.rs`: what `b.rs` is"), ["a.rs"]);
    assert_eq!(
        bullet_names("`a.rs` (uses `x`), `b.rs`: both"),
        ["a.rs", "b.rs"]
    );
    assert_eq!(bullet_names("`src/`"), ["src/"]);
    assert_eq!(
        bullet_names("`policies.rs`, `audit.rs` (`audit"),
        ["policies.rs", "audit.rs"]
    );
}

#[test]
fn mapped_paths_nest_under_folders() {
    let map = "- `a/`: crate\n  - `src/`\n    - `x.rs`, `y.rs`: two\n  - `b.rs`: one\n    continued\n- `c.sh`\n";
    assert_eq!(
        mapped_paths(map).unwrap(),
        ["a/", "a/src/", "a/src/x.rs", "a/src/y.rs", "a/b.rs", "c.sh"]
    );
    assert!(
        mapped_paths("- `a.rs`\n  - `b.rs`\n").is_err(),
        "below a file"
    );
}

#[test]
fn code_map_is_the_source_tree() {
    let root = repo_root();
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mapped = mapped_paths(code_map(&architecture)).unwrap_or_else(|e| panic!("{e}"));
    let mut problems = Vec::new();
    for p in &mapped {
        if !root.join(p).exists() {
            problems.push(format!(
                "ARCHITECTURE.md's code map names {p}, which does not exist"
            ));
        }
    }
    let listed: BTreeSet<&str> = mapped.iter().map(String::as_str).collect();
    for file in tracked_sources(&root) {
        if !listed.contains(file.as_str()) {
            problems.push(format!(
                "{file} is not in ARCHITECTURE.md's code map (add a line under its folder)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the code map and the tree disagree:\n  {}",
        problems.join("\n  ")
    );
}
