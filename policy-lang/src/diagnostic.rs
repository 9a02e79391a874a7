//! Diagnostics: what is wrong, where (file:line:col), and a hint to fix it.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A position in a policy file. Lines and columns start at 1; 0 means "unknown".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Span {
    pub file: String,
    pub line: u32,
    pub col: u32,
}

impl Span {
    pub fn new(file: &str, line: u32, col: u32) -> Self {
        Span {
            file: file.to_string(),
            line,
            col,
        }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// One line: `file:line:col: error: message (hint: ...)`.
    pub fn short(&self) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.hint {
            Some(h) => format!("{}: {sev}: {} (hint: {h})", self.span, self.message),
            None => format!("{}: {sev}: {}", self.span, self.message),
        }
    }

    /// Renders like rustc: a header, the location, the source line and a caret.
    pub fn render(&self, source: &str) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = String::new();
        let _ = writeln!(out, "{sev}: {}", self.message);
        let width = self.span.line.max(1).to_string().len();
        let pad = " ".repeat(width);
        let _ = writeln!(out, "{pad}--> {}", self.span);
        if self.span.line > 0
            && let Some(text) = source.lines().nth(self.span.line as usize - 1)
        {
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {}", self.span.line, text);
            let col = self.span.col.max(1) as usize - 1;
            // Keep tabs so the caret lines up under tab-indented source.
            let lead: String = text
                .chars()
                .take(col)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{pad} | {lead}^");
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "{pad} = hint: {h}");
        }
        out
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.len() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
/// two adjacent characters (the commonest typo: "dney" for "deny") each cost 1.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_column() {
        let d = Diagnostic::error(Span::new("p.rhai", 2, 5), "bad thing").with_hint("do better");
        let r = d.render("line one\nabc defg\n");
        assert!(r.contains("--> p.rhai:2:5"), "{r}");
        assert!(r.contains("2 | abc defg"), "{r}");
        assert!(r.contains("  |     ^"), "{r}");
        assert!(r.contains("= hint: do better"), "{r}");
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("ingres", ["ingress", "egress"]),
            Some("ingress")
        );
        assert_eq!(did_you_mean("zzzzzz", ["ingress", "egress"]), None);
    }
}
