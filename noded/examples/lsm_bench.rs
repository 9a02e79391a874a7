//! LSM overhead benchmark; runs inside the VM tier's guest (`scripts/vm/bench.sh`), since
//! BPF-LSM programs only load there.
//!
//! Two loops, `open`+`close` of a file four directories deep and `fork`+`exec` of
//! `/bin/true`, under: no program; the baseline, a minimal LSM program doing one inode hash
//! lookup per hook (`bpf/lsm_bench_min.bpf.c`); Palisade's programs with 10 and with 10,000
//! file rules (on other files, plus one exec deny rule). All in one boot, and every round
//! measures each configuration back to back (programs are attached and detached between
//! them), so a noisy neighbour hits all of them alike; the table shows medians over
//! the rounds. Emulation inflates absolute numbers: read the ratios to the baseline.
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

fn measure(open_n: usize, exec_n: usize) -> (f64, f64) {
    (open_close(open_n), fork_exec(exec_n))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
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

    phase("load baseline");
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    let mut base = Ebpf::load(BENCH_BASELINE_OBJECT).expect("load baseline object");
    for (name, hook) in [
        ("pal_bench_file_open", "file_open"),
        ("pal_bench_bprm_check", "bprm_check_security"),
    ] {
        let p: &mut LsmProgram = base.program_mut(name).unwrap().try_into().unwrap();
        p.load(hook, &btf).expect("load baseline program");
    }
    phase("load palisade");
    let mut lsm = LsmEnforcer::load(1000, None).expect("load Palisade's LSM programs");
    lsm.set_attached(false).unwrap();
    settle();

    // Per rule count: `rounds` rounds of (none, baseline, palisade) back to back; medians.
    let mut table: Vec<(String, (f64, f64), (f64, f64))> = Vec::new();
    let mut none_o = Vec::new();
    let mut none_e = Vec::new();
    let mut base_o = Vec::new();
    let mut base_e = Vec::new();
    for n in [10usize, 10_000] {
        phase(&format!("palisade {n} rules"));
        let unenforced = lsm.apply(&[(policy(n), 1)]).expect("apply");
        assert!(unenforced.is_empty(), "unenforced: {unenforced:?}");
        let (mut ro, mut re, mut po, mut pe) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (no, ne) = measure(open_n, exec_n);
            let links = attach_baseline(&mut base);
            let (bo, be) = measure(open_n, exec_n);
            drop(links);
            settle();
            lsm.set_attached(true).unwrap();
            let (o, e) = measure(open_n, exec_n);
            lsm.set_attached(false).unwrap();
            settle();
            none_o.push(no / bo);
            none_e.push(ne / be);
            base_o.push(bo);
            base_e.push(be);
            ro.push(o / bo);
            re.push(e / be);
            po.push(o);
            pe.push(e);
        }
        table.push((
            format!("palisade, {n} rules"),
            (median(po), median(ro)),
            (median(pe), median(re)),
        ));
    }
    let baseline = (median(base_o.clone()), median(base_e.clone()));
    let none = (
        (baseline.0 * median(none_o.clone()), median(none_o)),
        (baseline.1 * median(none_e.clone()), median(none_e)),
    );
    println!(
        "PALBENCH open+close x{open_n}, fork+exec x{exec_n}; medians of {rounds} rounds, each round runs every configuration back to back; ratios are per round to the baseline"
    );
    println!(
        "PALBENCH {:<24} {:>12} {:>10} {:>14} {:>10}",
        "", "open+close", "vs base", "fork+exec", "vs base"
    );
    let row = |name: &str, o: (f64, f64), e: (f64, f64)| {
        println!(
            "PALBENCH {:<24} {:>9.0} ns {:>9.2}x {:>11.0} ns {:>9.2}x",
            name, o.0, o.1, e.0, e.1
        )
    };
    row("no LSM program", none.0, none.1);
    row("minimal (baseline)", (baseline.0, 1.0), (baseline.1, 1.0));
    for (name, o, e) in &table {
        row(name, *o, *e);
    }
}
