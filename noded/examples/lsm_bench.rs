//! LSM overhead benchmark; runs inside the VM tier's guest (`scripts/vm/bench.sh`), since
//! BPF-LSM programs only load there.
//!
//! Two loops, `open`+`close` of a file four directories deep and `fork`+`exec` of
//! `/bin/true`, and the open of a file 200 directories deep, first (a directory tree no
//! program has seen: Palisade walks all 200 levels and remembers them) and repeated, under:
//! no program; the baseline, a minimal LSM program doing one inode hash lookup per hook
//! (`bpf/bench/lsm_bench_min.bpf.c`); Palisade's programs with 10 and with 10,000 file rules (on
//! other files, plus one exec deny rule). All in one boot. Every round
//! measures each configuration back to back (programs are attached and detached between
//! them, each measurement after a warm-up), in an order that rotates from round to round so
//! that no configuration always comes first or last; a noisy neighbour hits all of them
//! alike. The table shows, per configuration, the median over the rounds of its ratio to
//! the baseline measured in the same round, and the spread (lowest and highest ratio).
//! Emulation inflates absolute numbers: read the ratios to the baseline.
//!
//! Usage: lsm_bench [OPEN_ITERS] [EXEC_ITERS] [ROUNDS]

use aya::programs::Lsm as LsmProgram;
use aya::{Btf, Ebpf};
use palisade_noded::lsm::LsmEnforcer;
use palisade_policy::diagnostic::Span;
use palisade_policy::ir::{Action, ExecMode, ExecRule, FileOp, FileRule, Mode, Policy};
use std::ffi::CString;
use std::time::Instant;

/// The baseline object (`bpf/bench/lsm_bench_min.bpf.c`): one inode hash lookup on
/// `file_open` and on `bprm_check_security`. Benchmark-only: not embedded in the daemon.
static BENCH_BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench/lsm_bench_min.bpf.o"));

const TARGET: &str = "/bench/d1/d2/d3/file";
/// Levels of the deep files: /bench/deep/<tree>/d/.../d/file.
const DEEP: usize = 200;
/// Fresh deep trees opened once per measurement ("first").
const FRESH_PER_MEASURE: usize = 10;

/// A file `DEEP` levels below the root of its filesystem, in tree `tree`.
fn deep_file(tree: usize) -> String {
    format!("/bench/deep/t{tree}{}/file", "/d".repeat(DEEP - 4))
}

/// Opens and closes `path` `n` times; ns per open+close.
fn open_close_path(path: &str, n: usize) -> f64 {
    let c = CString::new(path).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: plain syscalls on a NUL-terminated path we own.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
            assert!(fd >= 0, "open {path} failed");
            libc::close(fd);
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Opens each of the fresh trees' files once; ns per open+close.
fn open_fresh(trees: std::ops::Range<usize>) -> f64 {
    let n = trees.len();
    let t = Instant::now();
    for tree in trees {
        open_close_path(&deep_file(tree), 1);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn open_close(n: usize) -> f64 {
    let path = CString::new(TARGET).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: plain syscalls on a NUL-terminated path we own.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            assert!(fd >= 0, "open {TARGET} failed");
            libc::close(fd);
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn fork_exec(n: usize) -> f64 {
    let prog = CString::new("/bin/true").unwrap();
    let argv = [prog.as_ptr(), std::ptr::null()];
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: the child only calls execv and _exit.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert_eq!(status, 0, "/bin/true failed");
        }
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// One measurement: ns per open+close, fork+exec, first open of a fresh deep file and
/// repeated open of one.
#[derive(Clone, Copy, Default)]
struct M {
    open: f64,
    exec: f64,
    deep_first: f64,
    deep_again: f64,
}

/// A warm-up (the emulator translates freshly attached programs on first use; the inode
/// cache fills), then the timed loops, each in its own window of the programs' run
/// statistics (`stats`, when there are programs): returns the times and ns per run of
/// file_open and bprm_check over the open+close and fork+exec loops, and of file_open over
/// the first opens of the fresh deep trees `fresh` (its first tree is the repeated one).
fn measure(
    open_n: usize,
    exec_n: usize,
    fresh: std::ops::Range<usize>,
    stats: &dyn Fn() -> Option<[(std::time::Duration, u64); 2]>,
) -> (M, [f64; 3]) {
    let mut prog = [0.0; 3];
    open_close(open_n / 20 + 1);
    fork_exec(exec_n / 20 + 1);
    let again = deep_file(fresh.start);
    open_close_path(&again, 2);
    let before = stats();
    let open = open_close(open_n);
    let exec = fork_exec(exec_n);
    if let (Some(b), Some(a)) = (before, stats()) {
        let [o, e] = per_run(b, a);
        prog[0] = o;
        prog[1] = e;
    }
    let before = stats();
    let deep_first = open_fresh(fresh.start + 1..fresh.end);
    if let (Some(b), Some(a)) = (before, stats()) {
        prog[2] = per_run(b, a)[0];
    }
    let m = M {
        open,
        exec,
        deep_first,
        deep_again: open_close_path(&again, open_n / 4 + 1),
    };
    (m, prog)
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    None,
    Baseline,
    Palisade,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Nanoseconds per run of each of the two programs that matter here (file_open,
/// bprm_check) between two snapshots of the kernel's run statistics.
fn per_run(
    before: [(std::time::Duration, u64); 2],
    after: [(std::time::Duration, u64); 2],
) -> [f64; 2] {
    let f = |i: usize| {
        let runs = after[i].1.saturating_sub(before[i].1).max(1);
        (after[i].0.saturating_sub(before[i].0)).as_nanos() as f64 / runs as f64
    };
    [f(0), f(1)]
}

fn stats_of(ebpf: &Ebpf, names: [&str; 2]) -> [(std::time::Duration, u64); 2] {
    names.map(|n| palisade_noded::lsm::run_stats(ebpf, n).expect("program stats"))
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Links of the baseline programs; dropping them detaches.
fn attach_baseline(ebpf: &mut Ebpf) -> Vec<aya::programs::links::FdLink> {
    let mut links = Vec::new();
    for name in ["pal_bench_file_open", "pal_bench_bprm_check"] {
        let p: &mut LsmProgram = ebpf.program_mut(name).unwrap().try_into().unwrap();
        let id = p.attach().expect("attach baseline program");
        links.push(p.take_link(id).unwrap().into());
    }
    links
}

/// Detaching goes through an RCU grace period; let it pass.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(1500));
}

fn policy(rules: usize) -> Policy {
    let mut p: Policy = serde_json::from_value(serde_json::json!({
        "ir_version": 1, "name": "bench", "mode": "enforce"
    }))
    .unwrap();
    p.mode = Mode::Enforce;
    for i in 0..rules {
        let path = format!("/bench/rules/r{}/f{i}", i % 100);
        p.files.push(FileRule {
            id: i as u32 + 1,
            name: format!("r{i}"),
            path,
            subtree: true,
            ops: vec![FileOp::Read, FileOp::Write],
            action: Action::Deny,
            except_binaries: vec![],
            except_uids: vec![],
            span: Span::new("bench", 1, 1),
        });
    }
    p.exec.push(ExecRule {
        id: rules as u32 + 1,
        name: "no-bin".into(),
        mode: ExecMode::Deny,
        binaries: vec!["/bench/denied-bin".into()],
        action: Action::Deny,
        except_uids: vec![],
        except_parents: vec![],
        span: Span::new("bench", 1, 1),
    });
    p
}

fn main() {
    let mut args = std::env::args().skip(1);
    let open_n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20000);
    let exec_n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    std::fs::create_dir_all("/bench/d1/d2/d3").unwrap();
    std::fs::write(TARGET, b"bench").unwrap();
    // Every file the rules name exists before any program is loaded.
    for i in 0..10_000 {
        let path = format!("/bench/rules/r{}/f{i}", i % 100);
        std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
        std::fs::write(&path, b"x").unwrap();
    }
    std::fs::write("/bench/denied-bin", b"#!/bin/true\n").unwrap();
    // Deep trees, each opened by one measurement only: rule counts x rounds x
    // configurations x FRESH_PER_MEASURE (+1 for the repeated file).
    let trees = 2 * rounds * 3 * (FRESH_PER_MEASURE + 1);
    for tree in 0..trees {
        let f = deep_file(tree);
        std::fs::create_dir_all(std::path::Path::new(&f).parent().unwrap()).unwrap();
        std::fs::write(&f, b"deep").unwrap();
    }
    let mut next_tree = 0usize;
    let mut fresh = || {
        let r = next_tree..next_tree + FRESH_PER_MEASURE + 1;
        next_tree += FRESH_PER_MEASURE + 1;
        r
    };
    let started = Instant::now();
    let phase = |name: &str| eprintln!("PALBENCH phase {name} at {:.0?}", started.elapsed());

    // The kernel times every program run while this descriptor is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    phase("load baseline");
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    let mut base = Ebpf::load(BENCH_BASELINE_OBJECT).expect("load baseline object");
    for (name, hook) in [
        ("pal_bench_file_open", "file_open"),
        ("pal_bench_bprm_check", "bprm_check_security"),
        ("pal_bench_istore_open", "file_open"),
        ("pal_bench_hashcache_open", "file_open"),
    ] {
        let p: &mut LsmProgram = base.program_mut(name).unwrap().try_into().unwrap();
        palisade_noded::objects::load_retrying(|| p.load(hook, &btf))
            .expect("load baseline program");
    }
    phase("load palisade");
    let mut lsm = LsmEnforcer::load(1000, palisade_noded::lsm::DEFAULT_RINGBUF_BYTES, None)
        .expect("load Palisade's LSM programs");
    lsm.set_attached(false).unwrap();
    settle();

    // Per rule count: `rounds` rounds of (none, baseline, palisade) in rotating order.
    struct Row {
        name: String,
        open_ns: Vec<f64>,
        open_ratio: Vec<f64>,
        exec_ns: Vec<f64>,
        exec_ratio: Vec<f64>,
        deep_first_ns: Vec<f64>,
        deep_first_ratio: Vec<f64>,
        deep_again_ns: Vec<f64>,
        deep_again_ratio: Vec<f64>,
        /// ns per run of the file_open and bprm_check programs, and of file_open on the
        /// first opens of deep files.
        prog_ns: [Vec<f64>; 3],
    }
    let row = |name: &str| Row {
        name: name.to_string(),
        open_ns: Vec::new(),
        open_ratio: Vec::new(),
        exec_ns: Vec::new(),
        exec_ratio: Vec::new(),
        deep_first_ns: Vec::new(),
        deep_first_ratio: Vec::new(),
        deep_again_ns: Vec::new(),
        deep_again_ratio: Vec::new(),
        prog_ns: [Vec::new(), Vec::new(), Vec::new()],
    };
    const BASE_PROGS: [&str; 2] = ["pal_bench_file_open", "pal_bench_bprm_check"];
    const PAL_PROGS: [&str; 2] = ["pal_file_open", "pal_bprm_check"];
    let lsm_stats = |lsm: &LsmEnforcer| PAL_PROGS.map(|n| lsm.run_stats(n).expect("program stats"));
    let mut none = row("no LSM program");
    let mut baseline = row("minimal (baseline)");
    let mut table = Vec::new();
    let orders = [
        [Config::None, Config::Baseline, Config::Palisade],
        [Config::Baseline, Config::Palisade, Config::None],
        [Config::Palisade, Config::None, Config::Baseline],
        [Config::Palisade, Config::Baseline, Config::None],
        [Config::Baseline, Config::None, Config::Palisade],
        [Config::None, Config::Palisade, Config::Baseline],
    ];
    for n in [10usize, 10_000] {
        phase(&format!("palisade {n} rules"));
        let unenforced = lsm.apply(&[(policy(n), 1)]).expect("apply");
        assert!(unenforced.is_empty(), "unenforced: {unenforced:?}");
        let mut pal = row(&format!("palisade, {n} rules"));
        for round in 0..rounds {
            let mut got = [M::default(); 3];
            let mut prog = [[0.0; 3]; 3];
            for c in &orders[round % orders.len()] {
                let trees = fresh();
                let (m, p) = match c {
                    Config::None => measure(open_n, exec_n, trees, &|| None),
                    Config::Baseline => {
                        let links = attach_baseline(&mut base);
                        let r =
                            measure(open_n, exec_n, trees, &|| Some(stats_of(&base, BASE_PROGS)));
                        drop(links);
                        r
                    }
                    Config::Palisade => {
                        lsm.set_attached(true).unwrap();
                        let r = measure(open_n, exec_n, trees, &|| Some(lsm_stats(&lsm)));
                        lsm.set_attached(false).unwrap();
                        r
                    }
                };
                prog[*c as usize] = p;
                if *c != Config::None {
                    settle();
                }
                got[*c as usize] = m;
            }
            let b = got[Config::Baseline as usize];
            for (k, r) in [&mut none, &mut baseline, &mut pal].into_iter().enumerate() {
                let m = got[k];
                for (j, v) in prog[k].iter().enumerate() {
                    r.prog_ns[j].push(*v);
                }
                r.open_ns.push(m.open);
                r.exec_ns.push(m.exec);
                r.open_ratio.push(m.open / b.open);
                r.exec_ratio.push(m.exec / b.exec);
                r.deep_first_ns.push(m.deep_first);
                r.deep_first_ratio.push(m.deep_first / b.deep_first);
                r.deep_again_ns.push(m.deep_again);
                r.deep_again_ratio.push(m.deep_again / b.deep_again);
            }
        }
        table.push(pal);
    }
    println!(
        "PALBENCH open+close x{open_n}, fork+exec x{exec_n}; {rounds} rounds, every configuration back to back in a rotating order; ratio = to the baseline in the same round: median [lowest-highest]"
    );
    println!(
        "PALBENCH {:<24} {:>10} {:>22} {:>12} {:>22}",
        "", "open+close", "vs base", "fork+exec", "vs base"
    );
    for r in std::iter::once(&none)
        .chain(std::iter::once(&baseline))
        .chain(table.iter())
    {
        let (olo, ohi) = spread(&r.open_ratio);
        let (elo, ehi) = spread(&r.exec_ratio);
        println!(
            "PALBENCH {:<24} {:>7.0} ns {:>6.2}x [{:.2}-{:.2}] {:>9.0} ns {:>6.2}x [{:.2}-{:.2}]",
            r.name,
            median(r.open_ns.clone()),
            median(r.open_ratio.clone()),
            olo,
            ohi,
            median(r.exec_ns.clone()),
            median(r.exec_ratio.clone()),
            elo,
            ehi
        );
    }
    // Fast-path candidates on their own: ns per file_open run, beside the baseline.
    let mut cand: Vec<(&str, Vec<f64>)> = vec![
        ("pal_bench_file_open", Vec::new()),
        ("pal_bench_istore_open", Vec::new()),
        ("pal_bench_hashcache_open", Vec::new()),
    ];
    for _ in 0..rounds.min(6) {
        for (name, v) in cand.iter_mut() {
            let p: &mut LsmProgram = base.program_mut(name).unwrap().try_into().unwrap();
            let id = p.attach().expect("attach candidate");
            let link: aya::programs::links::FdLink = p.take_link(id).unwrap().into();
            let before = stats_of(&base, [name, name]);
            open_close(open_n);
            let after = stats_of(&base, [name, name]);
            v.push(per_run(before, after)[0]);
            drop(link);
            settle();
        }
    }
    let c0 = median(cand[0].1.clone());
    for (name, v) in &cand {
        let m = median(v.clone());
        println!("PALBENCH candidate {name:<28} {m:>7.0} ns {:>6.2}x", m / c0);
    }
    println!(
        "PALBENCH open+close of a file {DEEP} levels deep: first (a tree no program has seen; {FRESH_PER_MEASURE} per round) and repeated; ratio = to the baseline in the same round: median [lowest-highest]"
    );
    println!(
        "PALBENCH {:<24} {:>10} {:>22} {:>12} {:>22}",
        "", "first", "vs base", "repeated", "vs base"
    );
    for r in std::iter::once(&none)
        .chain(std::iter::once(&baseline))
        .chain(table.iter())
    {
        let (flo, fhi) = spread(&r.deep_first_ratio);
        let (alo, ahi) = spread(&r.deep_again_ratio);
        println!(
            "PALBENCH {:<24} {:>7.0} ns {:>6.2}x [{:.2}-{:.2}] {:>9.0} ns {:>6.2}x [{:.2}-{:.2}]",
            r.name,
            median(r.deep_first_ns.clone()),
            median(r.deep_first_ratio.clone()),
            flo,
            fhi,
            median(r.deep_again_ns.clone()),
            median(r.deep_again_ratio.clone()),
            alo,
            ahi
        );
    }
    // The programs' own cost, timed by the kernel (BPF_ENABLE_STATS): ns per run.
    println!(
        "PALBENCH program cost per run (kernel run-time statistics, median of rounds): {:<10} {:>10} {:>8} {:>10} {:>8} {:>14} {:>8}",
        "", "file_open", "vs base", "bprm_check", "vs base", "deep first", "vs base"
    );
    let b = [
        median(baseline.prog_ns[0].clone()),
        median(baseline.prog_ns[1].clone()),
        median(baseline.prog_ns[2].clone()),
    ];
    for r in std::iter::once(&baseline).chain(table.iter()) {
        let o = median(r.prog_ns[0].clone());
        let e = median(r.prog_ns[1].clone());
        let d = median(r.prog_ns[2].clone());
        println!(
            "PALBENCH {:<24} {:>7.0} ns {:>7.2}x {:>7.0} ns {:>7.2}x {:>11.0} ns {:>7.2}x",
            r.name,
            o,
            o / b[0],
            e,
            e / b[1],
            d,
            d / b[2]
        );
    }
}
