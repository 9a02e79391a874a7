//! The binaries' own documentation, generated from their clap command trees: man pages
//! (`clap_mangen`) and shell completion scripts (`clap_complete`). The Debian packages
//! (`scripts/package.sh`) are made from what the packaged binaries print here, so the pages
//! and completions always describe the flags those binaries take.
//!
//! Man pages come one per command, the way `git` has them: `palisadectl.1` lists the
//! subcommands, `palisadectl-pki-init.1` documents `palisadectl pki init`. Hidden commands
//! and flags (such as `generate-man` itself) appear in neither the pages nor the
//! completions, and no page is written for clap's own `help` subcommand.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The shells a completion script is written for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The daemons' hidden documentation commands, flattened into their subcommands; the
/// packages run them at build time. (`palisadectl` has its own: its `completion` is public.)
#[derive(clap::Subcommand, Debug)]
pub enum DocCommand {
    /// The shell completion script on stdout (the packages install it).
    #[command(hide = true)]
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages (one per subcommand) into DIR (the packages install them).
    #[command(hide = true)]
    GenerateMan { dir: PathBuf },
}

impl DocCommand {
    /// Does what the command says for the binary whose tree is `cmd`: the completion script
    /// on stdout, or the man pages into DIR with each file written named on stdout.
    pub fn run(&self, cmd: clap::Command) -> std::io::Result<()> {
        match self {
            DocCommand::Completion { shell } => {
                write_completion(cmd, *shell, &mut std::io::stdout());
                Ok(())
            }
            DocCommand::GenerateMan { dir } => {
                let pages = write_man_pages(cmd, dir).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot write man pages to {}: {e}", dir.display()),
                    )
                })?;
                for p in pages {
                    println!("{}", p.display());
                }
                Ok(())
            }
        }
    }
}

/// Writes the completion script of `cmd` for `shell` (the program name is `cmd`'s name).
pub fn write_completion(cmd: clap::Command, shell: Shell, out: &mut dyn Write) {
    let mut cmd = visible_only(&cmd);
    let name = cmd.get_name().to_string();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, name, out);
}

/// `cmd` rebuilt without its hidden subcommands and flags, which `clap_complete`'s
/// generators would list. What completion needs is kept: names, flags with their values and
/// help, descriptions. Argument groups are not (they only constrain parsing).
fn visible_only(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(visible_only),
        );
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_string());
    }
    out
}

/// Writes `NAME.1` and one `NAME-SUB.1` (`NAME-SUB-SUB.1`, ...) per visible subcommand into
/// `dir`, creating it; returns the files written, the top-level page first.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn without_help_subcommand(cmd: clap::Command) -> clap::Command {
        cmd.disable_help_subcommand(true)
            .mut_subcommands(without_help_subcommand)
    }
    fn write(
        cmd: &clap::Command,
        date: &str,
        dir: &Path,
        out: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        let page = clap_mangen::Man::new(cmd.clone())
            .date(date.to_string())
            .manual("Palisade");
        out.push(page.generate_to(dir)?);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub, date, dir, out)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = without_help_subcommand(cmd);
    // Gives every subcommand its full name (`palisadectl-pki-init`) and usage line.
    cmd.build();
    let mut out = Vec::new();
    write(&cmd, &page_date(), dir, &mut out)?;
    Ok(out)
}

/// The pages' date: `$SOURCE_DATE_EPOCH`'s (so that the same sources give the same pages),
/// else today's. (Without one, clap_mangen's `.TH` line shifts the source into the date's
/// place.)
fn page_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let (y, m, d) = civil_date(secs / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (era * 400 + yoe + u64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("tool")
            .version("1.0")
            .about("A tool")
            .subcommand(
                Command::new("group").about("A group").subcommand(
                    Command::new("leaf")
                        .about("A leaf")
                        .arg(Arg::new("x").long("x"))
                        .arg(Arg::new("layout").long("layout").hide(true)),
                ),
            )
            .subcommand(Command::new("secret").hide(true))
            .arg(Arg::new("quiet").long("quiet").hide(true))
    }

    #[test]
    fn one_page_per_visible_command_and_nothing_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(cmd(), dir.path()).unwrap();
        let names: Vec<_> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool.1", "tool-group.1", "tool-group-leaf.1"]);
        let top = std::fs::read_to_string(&pages[0]).unwrap();
        let th = top.lines().find(|l| l.starts_with(".TH ")).unwrap();
        let date = page_date();
        assert_eq!(th, format!(".TH tool 1 {date} \"tool 1.0\" Palisade"));
        assert!(top.contains("tool\\-group(1)"), "{top}");
        assert!(!top.contains("secret") && !top.contains("quiet"), "{top}");
        assert!(!top.contains("help\\-"), "no help subcommand page: {top}");
        let leaf = std::fs::read_to_string(&pages[2]).unwrap();
        assert!(leaf.contains("tool group leaf"), "full usage line: {leaf}");
    }

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_454), (2026, 1, 1));
    }

    #[test]
    fn completions_leave_hidden_commands_out() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            write_completion(cmd(), shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("group") && text.contains("leaf"),
                "{shell:?}: {text}"
            );
            for hidden in ["secret", "quiet", "layout"] {
                assert!(!text.contains(hidden), "{shell:?} lists {hidden}: {text}");
            }
        }
    }
}
