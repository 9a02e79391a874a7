//! Every way `palisadectl` prints, in one place: text for people, `-o json` (one object per
//! line) for scripts.
//!
//! A thing that is printed implements [`Render`] (its text and its JSON side by side, in
//! the submodule of its kind); commands hand it to a [`Printer`], the only code that looks
//! at the [`Format`]. Outputs that are the same in every format (pki messages, exported
//! documents, diagnostics and errors on stderr) go through the [`Printer`] too.
//!
//! - [`audit`]: audit events.
//! - [`node`]: nodes (`nodes`, `nodes label`).
//! - [`revision`]: stored revisions (`list`, `get`, `history`) and changes (`apply`,
//!   `rollback`, `delete`).
//! - [`rollout`]: rollouts (`rollout status|list|...`, `apply -w`), with progress bars.
//! - [`policy`]: the local policy tools (`validate`, `test`, `explain`, `diff`).
//!
//! Timestamps are RFC 3339 ([`palisade_proto::time::rfc3339`]); an audit event's JSON is
//! [`palisade_proto::v1::AuditEvent::to_json`], which the control plane's export writes too.

pub mod audit;
pub mod controlplanes;
pub mod node;
pub mod policy;
pub mod revision;
pub mod rollout;

use serde_json::Value;
use std::fmt::Display;

/// The `-o` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Something printed as one item: a line (or a few) of text, or one JSON object.
pub trait Render {
    /// For people; no final newline.
    fn text(&self) -> String;
    /// For scripts: one object, printed on one line.
    fn json(&self) -> Value;
    /// [`json`](Self::json) as text (an item printed at high rates may write it directly).
    fn json_line(&self) -> String {
        self.json().to_string()
    }
    /// [`json_line`](Self::json_line), appended to `out`.
    fn write_json_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.json_line().as_bytes());
    }
}

/// Writes to stdout. When the reader has gone away (`palisadectl nodes | head`), the command
/// ends quietly with status 0, as Unix tools do, instead of panicking in `println!`.
pub fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// [`out`] for bytes already rendered.
pub fn out_bytes(bytes: &[u8]) {
    use std::io::Write;
    if bytes.is_empty() {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_all(bytes) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints in the format the user chose.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    format: Format,
}

impl Printer {
    pub fn new(format: Format) -> Printer {
        Printer { format }
    }

    /// `item` as the chosen format renders it (no final newline).
    pub fn render(&self, item: &dyn Render) -> String {
        match self.format {
            Format::Text => item.text(),
            Format::Json => item.json_line(),
        }
    }

    /// One item on stdout.
    pub fn item(&self, item: &dyn Render) {
        out(format_args!("{}\n", self.render(item)));
    }

    /// Several items on stdout in one write (a fast stream's lines are not written one
    /// system call each).
    pub fn items<'a>(&self, items: impl IntoIterator<Item = &'a dyn Render>) {
        let mut text = Vec::new();
        for item in items {
            match self.format {
                Format::Text => text.extend_from_slice(item.text().as_bytes()),
                Format::Json => item.write_json_line(&mut text),
            }
            text.push(b'\n');
        }
        out_bytes(&text);
    }

    /// A line for people that has no JSON form: printed as text, left out with `-o json`
    /// (e.g. a test run's summary).
    pub fn text_only(&self, line: &dyn Display) {
        if self.format == Format::Text {
            out(format_args!("{line}\n"));
        }
    }

    /// A message of a command without JSON output (pki): the same in every format.
    pub fn message(&self, line: &dyn Display) {
        out(format_args!("{line}\n"));
    }

    /// A document other tools read (`export`): pretty JSON in every format.
    pub fn document(&self, v: &Value) -> serde_json::Result<()> {
        out(format_args!("{}\n", serde_json::to_string_pretty(v)?));
        Ok(())
    }

    /// A policy's diagnostics: rustc-style on stderr, or one JSON object per diagnostic on
    /// stdout (like rustc's JSON output).
    pub fn diagnostics(
        &self,
        checked: &palisade_policy::Checked,
        source: &str,
    ) -> serde_json::Result<()> {
        match self.format {
            Format::Json => {
                for d in &checked.diagnostics {
                    out(format_args!("{}\n", serde_json::to_string(d)?));
                }
            }
            Format::Text if !checked.diagnostics.is_empty() => {
                eprint!("{}", checked.render(source))
            }
            Format::Text => {}
        }
        Ok(())
    }

    /// Text for people on stderr, as is (rendered diagnostics, warnings), in every format.
    pub fn stderr(&self, text: &str) {
        eprint!("{text}");
    }

    /// A line on stderr, in every format.
    pub fn stderr_line(&self, line: &dyn Display) {
        eprintln!("{line}");
    }

    /// `error: ...` on stderr: what went wrong when a command gives up.
    pub fn error(&self, e: &dyn Display) {
        eprintln!("error: {e}");
    }
}
