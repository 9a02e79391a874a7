//! LSM overhead benchmark; runs inside the VM tier's guest (`scripts/vm/bench.sh`), since
//! BPF-LSM programs only load there.
//!
//! Two loops, `open`+`close` of a file four directories deep and `fork`+`exec` of
//! `/bin/true`, under: no program; the baseline, a minimal LSM program doing one inode hash
//! lookup per hook (`bpf/lsm_bench_min.bpf.c`); Palisade's programs with 10 and with 10,000
//! file rules (on other files, plus one exec deny rule). All in one boot. Every round
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
use palisade_noded::lsm::{BENCH_BASELINE_OBJECT, LsmEnforcer};
use palisade_policy::diagnostic::Span;
use palisade_policy::ir::{Action, ExecMode, ExecRule, FileOp, FileRule, Mode, Policy};
use std::ffi::CString;
use std::time::Instant;

const TARGET: &str = "/bench/d1/d2/d3/file";

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

/// A warm-up (the emulator translates freshly attached programs on first use; the inode
/// cache fills), then the timed loops.
fn measure(open_n: usize, exec_n: usize) -> (f64, f64) {
    open_close(open_n / 20 + 1);
    fork_exec(exec_n / 20 + 1);
    (open_close(open_n), fork_exec(exec_n))
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
        p.load(hook, &btf).expect("load baseline program");
    }
    phase("load palisade");
    let mut lsm = LsmEnforcer::load(1000, None).expect("load Palisade's LSM programs");
    lsm.set_attached(false).unwrap();
    settle();

    // Per rule count: `rounds` rounds of (none, baseline, palisade) in rotating order.
    struct Row {
        name: String,
        open_ns: Vec<f64>,
        open_ratio: Vec<f64>,
        exec_ns: Vec<f64>,
        exec_ratio: Vec<f64>,
        /// ns per run of the file_open and bprm_check programs.
        prog_ns: [Vec<f64>; 2],
    }
    let row = |name: &str| Row {
        name: name.to_string(),
        open_ns: Vec::new(),
        open_ratio: Vec::new(),
        exec_ns: Vec::new(),
        exec_ratio: Vec::new(),
        prog_ns: [Vec::new(), Vec::new()],
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
            let mut got = [(0.0, 0.0); 3];
            let mut prog = [[0.0; 2]; 3];
            for c in &orders[round % orders.len()] {
                let m = match c {
                    Config::None => measure(open_n, exec_n),
                    Config::Baseline => {
                        let links = attach_baseline(&mut base);
                        let before = stats_of(&base, BASE_PROGS);
                        let m = measure(open_n, exec_n);
                        prog[1] = per_run(before, stats_of(&base, BASE_PROGS));
                        drop(links);
                        m
                    }
                    Config::Palisade => {
                        lsm.set_attached(true).unwrap();
                        let before = lsm_stats(&lsm);
                        let m = measure(open_n, exec_n);
                        prog[2] = per_run(before, lsm_stats(&lsm));
                        lsm.set_attached(false).unwrap();
                        m
                    }
                };
                if *c != Config::None {
                    settle();
                }
                got[*c as usize] = m;
            }
            let (no, ne) = got[Config::None as usize];
            let (bo, be) = got[Config::Baseline as usize];
            let (po, pe) = got[Config::Palisade as usize];
            for (k, (r, (o, e))) in [
                (&mut none, (no, ne)),
                (&mut baseline, (bo, be)),
                (&mut pal, (po, pe)),
            ]
            .into_iter()
            .enumerate()
            {
                r.prog_ns[0].push(prog[k][0]);
                r.prog_ns[1].push(prog[k][1]);
                r.open_ns.push(o);
                r.exec_ns.push(e);
                r.open_ratio.push(o / bo);
                r.exec_ratio.push(e / be);
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
    // The programs' own cost, timed by the kernel (BPF_ENABLE_STATS): ns per run.
    println!(
        "PALBENCH program cost per run (kernel run-time statistics, median of rounds): {:<10} {:>10} {:>8} {:>10} {:>8}",
        "", "file_open", "vs base", "bprm_check", "vs base"
    );
    let b = [
        median(baseline.prog_ns[0].clone()),
        median(baseline.prog_ns[1].clone()),
    ];
    for r in std::iter::once(&baseline).chain(table.iter()) {
        let o = median(r.prog_ns[0].clone());
        let e = median(r.prog_ns[1].clone());
        println!(
            "PALBENCH {:<24} {:>7.0} ns {:>7.2}x {:>7.0} ns {:>7.2}x",
            r.name,
            o,
            o / b[0],
            e,
            e / b[1]
        );
    }
}
