//! LSM overhead benchmark; runs inside the VM tier's guest (`scripts/vm/bench.sh`), since
//! BPF-LSM programs only load there.
//!
//! Two loops, `open`+`close` of a file four directories deep and `fork`+`exec` of
//! `/bin/true`, under: no program; the baseline, a minimal LSM program doing one inode hash
//! lookup per hook (`bpf/lsm_bench_min.bpf.c`); Palisade's programs with 10 and with 10,000
//! file rules (on other files, plus one exec deny rule). All in one boot; each figure is
//! the best of `ROUNDS` runs. Emulation inflates absolute numbers, so the ratios to the
//! baseline are what to read.
//!
//! Usage: lsm_bench [OPEN_ITERS] [EXEC_ITERS]

use aya::programs::Lsm as LsmProgram;
use aya::{Btf, Ebpf};
use palisade_noded::lsm::{BENCH_BASELINE_OBJECT, LsmEnforcer};
use palisade_policy::diagnostic::Span;
use palisade_policy::ir::{Action, ExecMode, ExecRule, FileOp, FileRule, Mode, Policy};
use std::ffi::CString;
use std::time::Instant;

const ROUNDS: usize = 3;
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
    let mut o = f64::MAX;
    let mut e = f64::MAX;
    for _ in 0..ROUNDS {
        o = o.min(open_close(open_n));
        e = e.min(fork_exec(exec_n));
    }
    (o, e)
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

    phase("none");
    let none = measure(open_n, exec_n);
    phase("baseline");

    let baseline = {
        let btf = Btf::from_sys_fs().expect("kernel BTF");
        let mut ebpf = Ebpf::load(BENCH_BASELINE_OBJECT).expect("load baseline object");
        for (name, hook) in [
            ("pal_bench_file_open", "file_open"),
            ("pal_bench_bprm_check", "bprm_check_security"),
        ] {
            let p: &mut LsmProgram = ebpf.program_mut(name).unwrap().try_into().unwrap();
            p.load(hook, &btf).expect("load baseline program");
            p.attach().expect("attach baseline program");
        }
        let m = measure(open_n, exec_n);
        drop(ebpf);
        m
    };
    // Detaching goes through an RCU grace period; let it pass.
    std::thread::sleep(std::time::Duration::from_secs(2));

    let mut results = vec![("no LSM program", none), ("minimal (baseline)", baseline)];
    {
        let mut lsm = LsmEnforcer::load(1000, None).expect("load Palisade's LSM programs");
        for n in [10usize, 10_000] {
            phase(&format!("palisade {n}"));
            let unenforced = lsm.apply(&[(policy(n), 1)]).expect("apply");
            assert!(unenforced.is_empty(), "unenforced: {unenforced:?}");
            results.push((
                if n == 10 {
                    "palisade, 10 rules"
                } else {
                    "palisade, 10000 rules"
                },
                measure(open_n, exec_n),
            ));
        }
    }

    let (bo, be) = baseline;
    println!("PALBENCH open+close x{open_n}, fork+exec x{exec_n}, best of {ROUNDS}");
    println!(
        "PALBENCH {:<24} {:>12} {:>10} {:>14} {:>10}",
        "", "open+close", "vs base", "fork+exec", "vs base"
    );
    for (name, (o, e)) in &results {
        println!(
            "PALBENCH {:<24} {:>9.0} ns {:>9.2}x {:>11.0} ns {:>9.2}x",
            name,
            o,
            o / bo,
            e,
            e / be
        );
    }
}
