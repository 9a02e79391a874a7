//! Map capacity: how many entries a policy needs in each kernel map, checked at validation
//! so that a policy that would overflow a map is refused before it reaches a node.
//!
//! **Every constant here must equal the size of the BPF map (or kernel limit) it names.**
//! The sizes the kernel ABI defines come from `palisade-abi`, whose tests check them against
//! `bpf/lib/`; the others are limits of maps whose size no header names yet (a test there
//! fails when one does, so that it moves there). The check is per policy: several policies
//! together may still exceed a map on one node, which the node reports when it writes its
//! maps.

use super::net::{Enforced, compile_network};
use crate::diagnostic::{Diagnostic, Span};
use crate::ir::Policy;

/// `PAL_MAX_PFX4`: entries of the IPv4 prefix hash (both directions, both halves of the
/// double-buffered tables share it; see `plan::net`).
pub const NET_PREFIXES_V4: usize = palisade_abi::net::MAX_PFX4 as usize;
/// `PAL_MAX_PFX6`: entries of the IPv6 prefix hash.
pub const NET_PREFIXES_V6: usize = palisade_abi::net::MAX_PFX6 as usize;
/// `PAL_MAX_RATE_LIMITS`: entries of the rate-limit prefix map (source CIDRs).
pub const RATE_LIMIT_PREFIXES: usize = 16_384;
/// `PAL_MAX_FILE_ENTRIES`: `(inode, operation)` entries of the LSM file map. A rule on a
/// path needs one entry per operation.
pub const FILE_ENTRIES: usize = 65_536;
/// `PAL_MAX_EXEC_ENTRIES`: binaries of the exec deny map plus every allow-list binary.
pub const EXEC_ENTRIES: usize = 16_384;
/// `PAL_MAX_SCHED_CLASSES`: scheduler classes a node can hold.
pub const SCHED_CLASSES: usize = 256;
/// `BPF_MAXINSNS`: instructions of one classic BPF seccomp filter.
pub const SECCOMP_INSNS: usize = 4096;

/// How many entries a policy needs, per map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub ingress_v4: usize,
    pub ingress_v6: usize,
    pub egress_v4: usize,
    pub egress_v6: usize,
    pub rate_limits: usize,
    pub file_entries: usize,
    pub exec_entries: usize,
    pub sched_classes: usize,
    /// Estimated instructions, per seccomp profile (same order as the policy's).
    pub seccomp_insns: Vec<usize>,
    /// Why the network rules do not fit the datapath's rule and clause-set tables, if not.
    pub net_unfit: Option<String>,
}

/// Instructions of a compiled seccomp filter, estimated from above: an architecture check
/// and syscall load (4), per syscall of a rule a compare-and-jump (1) plus, per argument
/// comparison, a 64-bit compare as two 32-bit halves with loads (6), a return per rule (1),
/// and the default return (1).
pub fn seccomp_insns(p: &crate::ir::SeccompProfile) -> usize {
    4 + p
        .rules
        .iter()
        .map(|r| r.syscalls.len() * (1 + 6 * r.args.len()) + 1)
        .sum::<usize>()
        + 1
}

/// What `policy` alone needs.
pub fn usage(policy: &Policy) -> Usage {
    let net = compile_network(&[Enforced {
        policy,
        revision: 0,
    }]);
    let files = super::files::compile_files(&[Enforced {
        policy,
        revision: 0,
    }]);
    Usage {
        net_unfit: net.capacity_error(),
        ingress_v4: net.ingress.v4.len(),
        ingress_v6: net.ingress.v6.len(),
        egress_v4: net.egress.v4.len(),
        egress_v6: net.egress.v6.len(),
        rate_limits: policy
            .network
            .rate_limits
            .iter()
            .map(|r| r.cidrs.len().max(1))
            .sum(),
        file_entries: files.files.len(),
        exec_entries: files.exec.len()
            + files
                .allow_lists
                .iter()
                .map(|l| l.binaries.len())
                .sum::<usize>(),
        sched_classes: policy.sched.len(),
        seccomp_insns: policy.seccomp.iter().map(seccomp_insns).collect(),
    }
}

/// An error for every map `policy` would overflow.
pub fn check(policy: &Policy) -> Vec<Diagnostic> {
    let u = usage(policy);
    let at = |first: Option<&Span>| first.cloned().unwrap_or_default();
    let net_span = at(policy.network.rules.first().map(|r| &r.span));
    let mut out = Vec::new();
    let mut over = |span: Span, what: &str, need: usize, cap: usize| {
        if need > cap {
            out.push(
                Diagnostic::error(
                    span,
                    format!("{what} needs {need} map entries, but the map holds {cap}"),
                )
                .with_hint("merge prefixes or split the policy across node groups"),
            );
        }
    };
    // Both directions share one hash per family, and a revision switch fills the other
    // half while the current one is in force: a policy may use half of each.
    over(
        net_span.clone(),
        "IPv4 prefixes",
        u.ingress_v4 + u.egress_v4,
        NET_PREFIXES_V4 / 2,
    );
    over(
        net_span.clone(),
        "IPv6 prefixes",
        u.ingress_v6 + u.egress_v6,
        NET_PREFIXES_V6 / 2,
    );
    over(
        at(policy.network.rate_limits.first().map(|r| &r.span)),
        "rate limits",
        u.rate_limits,
        RATE_LIMIT_PREFIXES,
    );
    over(
        at(policy.files.first().map(|r| &r.span)),
        "file rules",
        u.file_entries,
        FILE_ENTRIES,
    );
    over(
        at(policy.exec.first().map(|r| &r.span)),
        "exec rules",
        u.exec_entries,
        EXEC_ENTRIES,
    );
    over(
        at(policy.sched.first().map(|r| &r.span)),
        "scheduler classes",
        u.sched_classes,
        SCHED_CLASSES,
    );
    for (p, n) in policy.seccomp.iter().zip(&u.seccomp_insns) {
        if *n > SECCOMP_INSNS {
            out.push(
                Diagnostic::error(
                    p.span.clone(),
                    format!(
                        "seccomp profile {:?} compiles to about {n} BPF instructions; a filter holds {SECCOMP_INSNS}",
                        p.name
                    ),
                )
                .with_hint("list fewer syscalls or comparisons, or rely on the default action"),
            );
        }
    }
    if let Some(why) = &u.net_unfit {
        out.push(
            Diagnostic::error(
                at(policy.network.rules.first().map(|r| &r.span)),
                format!("the network rules do not fit the datapath: {why}"),
            )
            .with_hint(
                "merge rules that share protocol and ports, or split the policy across node groups",
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_policy_is_refused_at_validation() {
        // One rule per line: more rules than the datapath can count.
        let n = super::super::net::MAX_RULES as u32 + 10;
        let mut src = String::from("policy(\"big\");\n");
        for i in 0..n {
            src.push_str(&format!(
                "network().ingress().deny(\"10.{}.{}.{}\");\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            ));
        }
        let c = crate::check_with("big.rhai", &src, &crate::dsl::Limits::large());
        let errs: Vec<_> = c.diagnostics.iter().map(|d| d.message.clone()).collect();
        assert!(
            errs.iter()
                .any(|m| m.contains("do not fit the datapath") && m.contains("network rules")),
            "{errs:?}"
        );
        let ok = "policy(\"small\");\nnetwork().ingress().deny(\"10.0.0.0/8\");\n";
        assert!(crate::check("s.rhai", ok).diagnostics.is_empty());
    }

    #[test]
    fn seccomp_estimate() {
        let p = crate::compile(
            "s.rhai",
            "policy(\"s\");\nseccomp(\"p\").allow([\"read\", \"write\", \"execve\"]).allow_where(\"socket\", [[0, \"eq\", 2]]);\n",
        )
        .unwrap();
        assert_eq!(seccomp_insns(&p.seccomp[0]), 4 + (3 + 1) + (7 + 1) + 1);
    }
}
