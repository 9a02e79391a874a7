//! Builds every BPF program with clang into OUT_DIR: `bpf/*.bpf.c` (the daemon embeds
//! these, see `src/objects.rs`) and the benchmark-only `bpf/bench/*.bpf.c` into
//! `OUT_DIR/bench/` (used only by the examples).
//!
//! The compiler is `$PALISADE_CLANG`, else `clang-19`, else `clang`. Install it with
//! `scripts/install-deps.sh`.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `*.bpf.c` files directly in `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    sources
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let bpf_dir = manifest.join("../bpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=PALISADE_CLANG");
    for d in ["", "lib", "bench"] {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(d).display());
    }

    let clang = std::env::var("PALISADE_CLANG").ok().unwrap_or_else(|| {
        ["clang-19", "clang"]
            .into_iter()
            .find(|c| Command::new(c).arg("--version").output().is_ok())
            .unwrap_or_else(|| {
                panic!("no clang found to build bpf/*.bpf.c: run scripts/install-deps.sh (installs clang-19)")
            })
            .to_string()
    });

    let bench_out = out.join("bench");
    std::fs::create_dir_all(&bench_out).expect("create OUT_DIR/bench");
    let jobs = sources(&bpf_dir)
        .into_iter()
        .map(|s| (s, out.clone()))
        .chain(
            sources(&bpf_dir.join("bench"))
                .into_iter()
                .map(|s| (s, bench_out.clone())),
        );
    for (src, dest) in jobs {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".bpf.c", "");
        let obj = dest.join(format!("{stem}.bpf.o"));
        let status = Command::new(&clang)
            .args([
                "-g",
                "-O2",
                "-target",
                "bpf",
                "-D__TARGET_ARCH_x86",
                "-Wall",
                "-Werror",
            ])
            .arg("-I")
            .arg(&bpf_dir)
            .args(["-I", "/usr/include/x86_64-linux-gnu"])
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| panic!("failed to run {clang}: {e}"));
        assert!(status.success(), "{clang} failed on {}", src.display());
    }
}
