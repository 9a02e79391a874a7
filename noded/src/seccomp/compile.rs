//! Seccomp profiles (IR) → seccomp-BPF programs, and installing one on the calling thread.
//!
//! Semantics: exactly `palisade_policy::plan::seccomp::decide_syscall` (a unit test checks
//! the compiled program against it): rules are tried in source order and the first rule
//! that lists the syscall and whose comparisons all hold decides; otherwise the profile's
//! default action. Unknown syscall names are skipped and reported, as libseccomp/runc do for
//! names the running architecture lacks.
//!
//! Layout of the program:
//! 1. arch check (not x86_64 → kill process), x32 syscall numbers (bit 30) → kill process;
//! 2. dispatch on the syscall number: a balanced binary search over the syscalls the profile
//!    names ([`Layout::Tree`], Palisade's) or one comparison after another
//!    ([`Layout::Linear`], how libseccomp lays out a filter by default; kept as the
//!    benchmark's baseline);
//! 3. one block per syscall: its rules in source order, up to the first without argument
//!    comparisons. The comparisons of each rule are compiled by `seccompiler` (64-bit,
//!    unsigned, as OCI specifies them).

use palisade_policy::ir::{ArgCmp, CmpOp, SeccompAction, SeccompProfile};
use seccompiler::{
    BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule, sock_filter,
};
use std::collections::BTreeMap;

use palisade_policy::syscalls as syscall_table;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Largest program the kernel accepts.
pub const MAX_INSNS: usize = 4096;
/// Dispatch ranges this small are searched linearly inside the tree.
const LEAF: usize = 4;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "seccomp profile {profile}: syscall {syscall}: argument index {index} is out of range (0..=5)"
    )]
    ArgIndex {
        profile: String,
        syscall: String,
        index: u8,
    },
    #[error("seccomp profile {profile}: errno {errno} is out of range (0..=4095)")]
    Errno { profile: String, errno: u32 },
    #[error("seccomp profile {profile}: argument comparison: {detail}")]
    Condition { profile: String, detail: String },
    #[error(
        "seccomp profile {profile}: the filter has {len} instructions; the kernel accepts at most {MAX_INSNS}"
    )]
    TooLarge { profile: String, len: usize },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("the kernel refused the seccomp filter: {0}")]
    Install(std::io::Error),
}

/// How the syscall-number dispatch is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Binary search (Palisade's).
    Tree,
    /// One comparison per syscall in number order (libseccomp's default; the baseline).
    Linear,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Install in log mode: every action other than allow becomes log.
    pub audit: bool,
    pub layout: Layout,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            audit: false,
            layout: Layout::Tree,
        }
    }
}

/// A compiled program and the syscall names it could not place.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub program: BpfProgram,
    pub unknown_syscalls: Vec<String>,
}

/// Kernel return value of an action.
pub fn ret_value(action: SeccompAction) -> u32 {
    match action {
        SeccompAction::Allow => RET_ALLOW,
        SeccompAction::Errno(e) => RET_ERRNO | (e & 0xffff),
        SeccompAction::Kill => RET_KILL_PROCESS,
        SeccompAction::Log => RET_LOG,
        SeccompAction::Trap => RET_TRAP,
    }
}

fn effective(action: SeccompAction, audit: bool) -> SeccompAction {
    match action {
        SeccompAction::Allow => SeccompAction::Allow,
        _ if audit => SeccompAction::Log,
        a => a,
    }
}

/// One rule of a syscall's block: the action and the comparisons that must all hold.
#[derive(Debug, Clone)]
struct BlockRule {
    action: SeccompAction,
    args: Vec<ArgCmp>,
}

/// Compiles a profile.
pub fn compile(profile: &SeccompProfile, opts: Options) -> Result<Compiled, SeccompError> {
    let default = effective(profile.default_action, opts.audit);
    check_action(profile, profile.default_action)?;
    let mut blocks: BTreeMap<u32, Vec<BlockRule>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for rule in &profile.rules {
        check_action(profile, rule.action)?;
        for name in &rule.syscalls {
            if let Some(a) = rule.args.iter().find(|a| a.index > 5) {
                return Err(SeccompError::ArgIndex {
                    profile: profile.name.clone(),
                    syscall: name.clone(),
                    index: a.index,
                });
            }
            let Some(nr) = syscall_table::number(name) else {
                if !unknown.contains(name) {
                    unknown.push(name.clone());
                }
                continue;
            };
            blocks.entry(nr).or_default().push(BlockRule {
                action: effective(rule.action, opts.audit),
                args: rule.args.clone(),
            });
        }
    }
    let mut asm = Asm::default();
    // 1. Architecture and x32.
    asm.raw(BPF_LD_W_ABS, 0, 0, 4);
    asm.raw(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64);
    asm.raw(BPF_RET_K, 0, 0, RET_KILL_PROCESS);
    asm.raw(BPF_LD_W_ABS, 0, 0, 0);
    asm.raw(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT);
    asm.raw(BPF_RET_K, 0, 0, RET_KILL_PROCESS);
    // 2. Dispatch.
    let nrs: Vec<u32> = blocks.keys().copied().collect();
    let default_label = asm.label();
    let block_labels: Vec<Label> = nrs.iter().map(|_| asm.label()).collect();
    let leaf = match opts.layout {
        Layout::Tree => LEAF,
        Layout::Linear => usize::MAX,
    };
    emit_dispatch(
        &mut asm,
        &nrs,
        &block_labels,
        0,
        nrs.len(),
        leaf,
        default_label,
    );
    // 3. Blocks, then the default.
    for (i, rules) in blocks.values().enumerate() {
        asm.place(block_labels[i]);
        let mut closed = false;
        for r in rules.iter() {
            if r.args.is_empty() {
                asm.raw(BPF_RET_K, 0, 0, ret_value(r.action));
                closed = true;
                break;
            }
            let conditions = r
                .args
                .iter()
                .map(|a| condition(a).map_err(|e| cond_err(profile, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let rule = SeccompRule::new(conditions).map_err(|e| cond_err(profile, e))?;
            let bpf: BpfProgram = rule.into();
            asm.code.extend(bpf.into_iter().map(Insn::Raw));
            asm.raw(BPF_RET_K, 0, 0, ret_value(r.action));
        }
        if !closed {
            asm.raw(BPF_RET_K, 0, 0, ret_value(default));
        }
    }
    asm.place(default_label);
    asm.raw(BPF_RET_K, 0, 0, ret_value(default));
    let program = asm.finish();
    if program.len() > MAX_INSNS {
        return Err(SeccompError::TooLarge {
            profile: profile.name.clone(),
            len: program.len(),
        });
    }
    Ok(Compiled {
        program,
        unknown_syscalls: unknown,
    })
}

fn check_action(profile: &SeccompProfile, a: SeccompAction) -> Result<(), SeccompError> {
    match a {
        SeccompAction::Errno(e) if e > 4095 => Err(SeccompError::Errno {
            profile: profile.name.clone(),
            errno: e,
        }),
        _ => Ok(()),
    }
}

fn cond_err(profile: &SeccompProfile, e: seccompiler::BackendError) -> SeccompError {
    SeccompError::Condition {
        profile: profile.name.clone(),
        detail: e.to_string(),
    }
}

fn condition(a: &ArgCmp) -> Result<SeccompCondition, seccompiler::BackendError> {
    let op = match a.op {
        CmpOp::Eq => SeccompCmpOp::Eq,
        CmpOp::Ne => SeccompCmpOp::Ne,
        CmpOp::Lt => SeccompCmpOp::Lt,
        CmpOp::Le => SeccompCmpOp::Le,
        CmpOp::Gt => SeccompCmpOp::Gt,
        CmpOp::Ge => SeccompCmpOp::Ge,
        CmpOp::MaskedEq { mask } => SeccompCmpOp::MaskedEq(mask),
    };
    SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, a.value)
}

/// Binary search over `nrs[lo..hi]`; leaves of at most `leaf` syscalls compare one by one.
fn emit_dispatch(
    asm: &mut Asm,
    nrs: &[u32],
    labels: &[Label],
    lo: usize,
    hi: usize,
    leaf: usize,
    default: Label,
) {
    if hi - lo <= leaf {
        for i in lo..hi {
            asm.raw(BPF_JMP_JEQ_K, 0, 1, nrs[i]);
            asm.ja(labels[i]);
        }
        asm.ja(default);
        return;
    }
    let mid = lo + (hi - lo) / 2;
    let right = asm.label();
    asm.raw(BPF_JMP_JGE_K, 0, 1, nrs[mid]);
    asm.ja(right);
    emit_dispatch(asm, nrs, labels, lo, mid, leaf, default);
    asm.place(right);
    emit_dispatch(asm, nrs, labels, mid, hi, leaf, default);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

enum Insn {
    Raw(sock_filter),
    Ja(Label),
}

/// A tiny assembler: raw instructions plus unconditional jumps to labels.
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn raw(&mut self, code: u16, jt: u8, jf: u8, k: u32) {
        self.code.push(Insn::Raw(sock_filter { code, jt, jf, k }));
    }
    fn ja(&mut self, l: Label) {
        self.code.push(Insn::Ja(l));
    }
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn place(&mut self, l: Label) {
        self.labels[l.0] = Some(self.code.len());
    }
    fn finish(self) -> BpfProgram {
        let labels = self.labels;
        self.code
            .into_iter()
            .enumerate()
            .map(|(pc, i)| match i {
                Insn::Raw(f) => f,
                Insn::Ja(l) => {
                    let target = labels[l.0].expect("every label is placed");
                    sock_filter {
                        code: BPF_JMP_JA,
                        jt: 0,
                        jf: 0,
                        k: (target - pc - 1) as u32,
                    }
                }
            })
            .collect()
    }
}

/// Sets no_new_privs and installs `program` on the calling thread.
pub fn install(program: &[sock_filter]) -> Result<(), SeccompError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SeccompError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    seccompiler::apply_filter(program).map_err(|e| match e {
        seccompiler::Error::Seccomp(io) => SeccompError::Install(io),
        other => SeccompError::Install(std::io::Error::other(other.to_string())),
    })
}

/// Runs a classic-BPF seccomp program on one syscall, as the kernel would: the return value.
/// For tests and the equivalence check with the policy evaluator.
pub fn evaluate(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => nr,
            4 => arch,
            8 | 12 => 0,
            o if (16..64).contains(&o) && o % 4 == 0 => {
                let a = args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            o => panic!("load from offset {o}"),
        }
    };
    let (mut acc, mut pc) = (0u32, 0usize);
    loop {
        let i = &program[pc];
        pc += 1;
        match i.code {
            BPF_LD_W_ABS => acc = word(i.k),
            BPF_RET_K => return i.k,
            BPF_JMP_JA => pc += i.k as usize,
            0x54 => acc &= i.k, // ALU AND K
            c => {
                let taken = match c {
                    BPF_JMP_JEQ_K => acc == i.k,
                    BPF_JMP_JGE_K => acc >= i.k,
                    0x25 => acc > i.k,      // JGT K
                    0x45 => acc & i.k != 0, // JSET K
                    c => panic!("opcode {c:#x}"),
                };
                pc += if taken { i.jt } else { i.jf } as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::diagnostic::Span;
    use palisade_policy::ir::SyscallRule;

    fn rule(names: &[&str], action: SeccompAction, args: Vec<ArgCmp>) -> SyscallRule {
        SyscallRule {
            syscalls: names.iter().map(|s| s.to_string()).collect(),
            action,
            args,
            span: Span::default(),
        }
    }

    fn cmp(index: u8, op: CmpOp, value: u64) -> ArgCmp {
        ArgCmp { index, op, value }
    }

    fn profile() -> SeccompProfile {
        SeccompProfile {
            name: "t".into(),
            default_action: SeccompAction::Errno(1),
            rules: vec![
                rule(
                    &["read", "write", "close", "getppid"],
                    SeccompAction::Allow,
                    vec![],
                ),
                rule(&["mkdir"], SeccompAction::Errno(13), vec![]),
                rule(&["ptrace"], SeccompAction::Kill, vec![]),
                rule(
                    &["socket"],
                    SeccompAction::Allow,
                    vec![cmp(0, CmpOp::Eq, 2)],
                ),
                rule(
                    &["socket"],
                    SeccompAction::Errno(97),
                    vec![cmp(0, CmpOp::Eq, 10)],
                ),
                rule(
                    &["personality"],
                    SeccompAction::Allow,
                    vec![cmp(0, CmpOp::MaskedEq { mask: 0xff }, 0)],
                ),
                rule(&["lseek"], SeccompAction::Allow, vec![cmp(2, CmpOp::Le, 1)]),
                rule(
                    &["mmap"],
                    SeccompAction::Allow,
                    vec![cmp(1, CmpOp::Gt, 1 << 33), cmp(2, CmpOp::Ne, 7)],
                ),
                rule(&["no_such_syscall"], SeccompAction::Allow, vec![]),
            ],
            span: Span::default(),
        }
    }

    fn run(p: &BpfProgram, name: &str, args: [u64; 6]) -> u32 {
        evaluate(
            p,
            AUDIT_ARCH_X86_64,
            syscall_table::number(name).unwrap(),
            args,
        )
    }

    #[test]
    fn decisions_in_both_layouts() {
        for layout in [Layout::Tree, Layout::Linear] {
            let c = compile(
                &profile(),
                Options {
                    audit: false,
                    layout,
                },
            )
            .unwrap();
            let p = &c.program;
            assert_eq!(c.unknown_syscalls, vec!["no_such_syscall".to_string()]);
            assert_eq!(run(p, "read", [0; 6]), RET_ALLOW);
            assert_eq!(run(p, "getppid", [0; 6]), RET_ALLOW);
            assert_eq!(run(p, "mkdir", [0; 6]), RET_ERRNO | 13);
            assert_eq!(run(p, "ptrace", [0; 6]), RET_KILL_PROCESS);
            assert_eq!(run(p, "openat", [0; 6]), RET_ERRNO | 1);
            assert_eq!(run(p, "socket", [2, 1, 0, 0, 0, 0]), RET_ALLOW);
            assert_eq!(run(p, "socket", [10, 1, 0, 0, 0, 0]), RET_ERRNO | 97);
            assert_eq!(run(p, "socket", [1, 1, 0, 0, 0, 0]), RET_ERRNO | 1);
            assert_eq!(
                run(p, "socket", [2 | 1 << 32, 1, 0, 0, 0, 0]),
                RET_ERRNO | 1
            );
            assert_eq!(run(p, "personality", [0x0100, 0, 0, 0, 0, 0]), RET_ALLOW);
            assert_eq!(
                run(p, "personality", [0x0101, 0, 0, 0, 0, 0]),
                RET_ERRNO | 1
            );
            assert_eq!(run(p, "lseek", [3, 0, 1, 0, 0, 0]), RET_ALLOW);
            assert_eq!(run(p, "lseek", [3, 0, 2, 0, 0, 0]), RET_ERRNO | 1);
            assert_eq!(run(p, "mmap", [0, 1 << 34, 3, 0, 0, 0]), RET_ALLOW);
            assert_eq!(run(p, "mmap", [0, 1 << 34, 7, 0, 0, 0]), RET_ERRNO | 1);
            assert_eq!(run(p, "mmap", [0, 1 << 33, 3, 0, 0, 0]), RET_ERRNO | 1);
            // Wrong arch and x32 numbers are killed.
            assert_eq!(evaluate(p, 0x4000_0003, 0, [0; 6]), RET_KILL_PROCESS);
            assert_eq!(
                evaluate(p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 39, [0; 6]),
                RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let mut p = profile();
        p.rules.insert(
            0,
            rule(
                &["read"],
                SeccompAction::Errno(5),
                vec![cmp(0, CmpOp::Eq, 9)],
            ),
        );
        p.rules.push(rule(&["write"], SeccompAction::Log, vec![]));
        let c = compile(&p, Options::default()).unwrap();
        assert_eq!(run(&c.program, "read", [9, 0, 0, 0, 0, 0]), RET_ERRNO | 5);
        assert_eq!(run(&c.program, "read", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
        // `write` is allowed by an earlier rule: the later `log` never decides.
        assert_eq!(run(&c.program, "write", [1, 0, 0, 0, 0, 0]), RET_ALLOW);
    }

    /// The compiled program decides every syscall exactly as the policy language's
    /// evaluator does, over a grid of syscalls and argument values.
    #[test]
    fn equivalent_to_decide_syscall() {
        use palisade_policy::plan::seccomp::decide_syscall;
        let mut p = profile();
        p.rules.insert(
            0,
            rule(
                &["read", "socket"],
                SeccompAction::Trap,
                vec![cmp(1, CmpOp::Ge, 1 << 40)],
            ),
        );
        p.rules.push(rule(&["socket"], SeccompAction::Log, vec![]));
        p.rules.push(rule(
            &["lseek"],
            SeccompAction::Kill,
            vec![cmp(2, CmpOp::Lt, 3)],
        ));
        let values = [
            0u64,
            1,
            2,
            3,
            7,
            10,
            0xff,
            0x100,
            1 << 33,
            1 << 34,
            1 << 40,
            u64::MAX,
        ];
        for layout in [Layout::Tree, Layout::Linear] {
            let c = compile(
                &p,
                Options {
                    audit: false,
                    layout,
                },
            )
            .unwrap();
            for nr in (0..460).chain([X32_SYSCALL_BIT | 1]) {
                for (i, a) in values.iter().enumerate() {
                    let b = values[(i * 7 + 3) % values.len()];
                    let c2 = values[(i * 5 + 1) % values.len()];
                    let args = [*a, b, c2, 0, 0, 0];
                    let want = ret_value(decide_syscall(&p, nr, &args).action);
                    let got = evaluate(&c.program, AUDIT_ARCH_X86_64, nr, args);
                    assert_eq!(got, want, "nr {nr} args {args:?} layout {layout:?}");
                }
            }
        }
    }

    #[test]
    fn audit_mode_logs_instead_of_denying() {
        let c = compile(
            &profile(),
            Options {
                audit: true,
                layout: Layout::Tree,
            },
        )
        .unwrap();
        assert_eq!(run(&c.program, "mkdir", [0; 6]), RET_LOG);
        assert_eq!(run(&c.program, "ptrace", [0; 6]), RET_LOG);
        assert_eq!(run(&c.program, "openat", [0; 6]), RET_LOG);
        assert_eq!(run(&c.program, "read", [0; 6]), RET_ALLOW);
    }

    #[test]
    fn every_syscall_reaches_its_block_in_a_large_tree() {
        let names: Vec<&str> = syscall_table::names().collect();
        let p = SeccompProfile {
            name: "all".into(),
            default_action: SeccompAction::Kill,
            rules: vec![rule(&names, SeccompAction::Errno(7), vec![])],
            span: Span::default(),
        };
        let c = compile(&p, Options::default()).unwrap();
        for (_, nr) in syscall_table::table() {
            assert_eq!(
                evaluate(&c.program, AUDIT_ARCH_X86_64, *nr, [0; 6]),
                RET_ERRNO | 7
            );
        }
        assert_eq!(
            evaluate(&c.program, AUDIT_ARCH_X86_64, 999, [0; 6]),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn bad_input_is_named() {
        let mut p = profile();
        p.rules.push(rule(
            &["read"],
            SeccompAction::Allow,
            vec![cmp(6, CmpOp::Eq, 0)],
        ));
        let e = compile(&p, Options::default()).unwrap_err().to_string();
        assert!(
            e.contains("profile t") && e.contains("read") && e.contains("index 6"),
            "{e}"
        );
        let mut p = profile();
        p.default_action = SeccompAction::Errno(5000);
        assert!(compile(&p, Options::default()).is_err());
    }
}
