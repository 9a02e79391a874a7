//! The local policy tools' results: a checked file (`validate`), a policy test case
//! (`test`), an explained event (`explain`), and a diff against the stored revision
//! (`diff`).

use super::Render;
use palisade_policy::cases::{CaseResult, Outcome};
use palisade_policy::diff::Change;
use palisade_policy::{Checked, Severity};
use serde_json::{Value, json};

/// A checked file as `validate` summarises it (its diagnostics are printed before).
pub struct FileReport<'a> {
    pub name: &'a str,
    pub checked: &'a Checked,
}

impl FileReport<'_> {
    fn errors(&self) -> usize {
        self.checked
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

impl Render for FileReport<'_> {
    fn text(&self) -> String {
        let name = self.name;
        match &self.checked.policy {
            Some(p) => format!(
                "{name}: ok (policy {:?}: {} network rules, {} file rules, {} exec rules, {} seccomp profiles, {} scheduler classes)",
                p.name,
                p.network.rules.len() + p.network.rate_limits.len(),
                p.files.len(),
                p.exec.len(),
                p.seccomp.len(),
                p.sched.len()
            ),
            None => format!("{name}: {} error(s)", self.errors()),
        }
    }

    /// Like rustc's JSON output, the summary object that follows a file's diagnostics
    /// (it has "summary": true).
    fn json(&self) -> Value {
        let c = self.checked;
        let errors = self.errors();
        json!({
            "summary": true,
            "file": self.name,
            "ok": !c.has_errors(),
            "policy": c.policy.as_ref().map(|p| p.name.clone()),
            "errors": errors,
            "warnings": c.diagnostics.len() - errors,
        })
    }
}

/// One case of a case file and how it came out.
pub struct CaseLine<'a> {
    pub file: &'a str,
    pub result: &'a CaseResult,
}

impl Render for CaseLine<'_> {
    fn text(&self) -> String {
        let (cname, r) = (self.file, self.result);
        if r.passed {
            return format!("ok   {cname}:{}: {}", r.case.line, r.case.text);
        }
        format!(
            "FAIL {cname}:{}: {}\n     got {}{} — {}",
            r.case.line,
            r.case.text,
            r.outcome.verdict,
            r.outcome
                .rule
                .as_ref()
                .map(|x| format!(" rule {x}"))
                .unwrap_or_default(),
            r.outcome.reason
        )
    }

    fn json(&self) -> Value {
        let r = self.result;
        json!({
            "file": self.file,
            "line": r.case.line,
            "case": r.case.text,
            "passed": r.passed,
            "verdict": r.outcome.verdict,
            "rule": r.outcome.rule,
            "reason": r.outcome.reason,
        })
    }
}

/// An event and the decision of the compiled plan (`explain`).
pub struct Explained<'a> {
    pub event: &'a str,
    pub outcome: &'a Outcome,
}

impl Render for Explained<'_> {
    fn text(&self) -> String {
        let o = self.outcome;
        format!(
            "{}\n  => {}{}\n  because {}",
            self.event,
            o.verdict,
            o.rule
                .as_ref()
                .map(|r| format!(" (rule {r})"))
                .unwrap_or_default(),
            o.reason
        )
    }

    fn json(&self) -> Value {
        let o = self.outcome;
        json!({"event": self.event, "verdict": o.verdict, "rule": o.rule, "reason": o.reason})
    }
}

/// What applying a policy would change against the stored revision (None: not stored).
pub struct Diff<'a> {
    pub policy: &'a str,
    pub stored_revision: Option<u64>,
    pub changes: &'a [Change],
}

impl Render for Diff<'_> {
    fn text(&self) -> String {
        let mut lines = vec![match self.stored_revision {
            Some(rev) => format!("policy {} against stored revision {rev}:", self.policy),
            None => format!(
                "policy {} is not stored yet; applying it adds:",
                self.policy
            ),
        }];
        if self.changes.is_empty() {
            lines.push("  no changes".into());
        }
        lines.extend(self.changes.iter().map(|c| format!("  {c}")));
        lines.join("\n")
    }

    fn json(&self) -> Value {
        json!({
            "policy": self.policy,
            "stored_revision": self.stored_revision,
            "changes": self.changes,
        })
    }
}
