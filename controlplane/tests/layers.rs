//! The control plane's modules depend on each other one way (lib.rs's module list, from
//! the bottom up): this test reads every source file, resolves each `crate::…` and
//! `super::…` path it names to the file that defines it, and fails on a cycle. It also
//! keeps the two rules the layout is for: `state.rs` uses no service, driver or metrics
//! code, and nothing in `rollout/` but the driver sees the shared state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file: `rollout/mod.rs` -> ["rollout"], `lib.rs` -> [].
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The longest prefix of `path` that is a module with a file of its own.
fn resolve(path: &[String], files: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| files.contains_key(m))
}

/// Every module each file names (`crate::a::b`, `super::c`), without itself.
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut all = Vec::new();
    sources(src, &mut all);
    let files: BTreeMap<Vec<String>, PathBuf> = all
        .iter()
        .filter(|p| !p.ends_with("main.rs"))
        .map(|p| (module_of(p.strip_prefix(src).unwrap()), p.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, path) in &files {
        // Code only: comments may name any module.
        let text: String = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut deps = BTreeSet::new();
        let parent = module[..module.len().saturating_sub(1)].to_vec();
        for (start, prefix) in [("crate::", Vec::new()), ("super::", parent)] {
            for (i, _) in text.match_indices(start) {
                let rest = &text[i + start.len()..];
                let named: Vec<String> = rest
                    .split("::")
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .take_while(|s| !s.is_empty())
                    .collect();
                let mut full = prefix.clone();
                full.extend(named);
                if let Some(m) = resolve(&full, &files)
                    && &m != module
                    && !module.starts_with(&m)
                {
                    deps.insert(m);
                }
            }
        }
        edges.insert(module.clone(), deps);
    }
    edges
}

fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        m: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            return Some(stack[i..].iter().map(|s| s.join("::")).collect());
        }
        if !done.insert(m.clone()) {
            return None;
        }
        stack.push(m.clone());
        for d in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn m(path: &str) -> Vec<String> {
    path.split("::").map(str::to_string).collect()
}

#[test]
fn modules_depend_on_each_other_one_way() {
    let edges = graph(&src());
    assert!(
        edges.len() > 15,
        "the source files were not found: {edges:?}"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_shared_state_sits_below_its_users() {
    let edges = graph(&src());
    let state = &edges[&m("state")];
    for above in ["api", "metrics", "rollout::driver"] {
        assert!(
            !state.iter().any(|d| d.starts_with(&m(above))),
            "state.rs must not use {above}: {state:?}"
        );
    }
    for (module, deps) in &edges {
        let in_rollout = module.first().is_some_and(|f| f == "rollout");
        if in_rollout && module != &m("rollout::driver") {
            assert!(
                !deps.contains(&m("state")) && !deps.iter().any(|d| d.starts_with(&m("api"))),
                "{} is below the shared state but uses it: {deps:?}",
                module.join("::")
            );
        }
    }
}
