//! The daemons' TOML config file. Its keys are the daemon's long flag names (`-` or `_`),
//! its values strings, numbers, booleans (for switches) or arrays (for repeatable flags):
//!
//! ```toml
//! controlplane = "https://cp.example:7443"
//! pki = "/etc/palisade/pki"
//! label = ["role=web", "zone=a"]
//! metrics = "127.0.0.1:9464"
//! ```
//!
//! Precedence: command line, then environment variable, then file, then default. This is
//! done by adding the file's settings to the command line (before the user's own
//! arguments) for every flag that neither the command line nor its environment variable
//! sets, so clap still checks every value and reports errors the usual way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: unknown setting {key:?}; known settings: {known}")]
    Unknown {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("config file {path}: setting {key:?}: {what}")]
    BadValue {
        path: PathBuf,
        key: String,
        what: String,
    },
}

/// The config file named by `--config PATH`/`--config=PATH` or `$env_var`, if any.
fn config_path(argv: &[OsString], env_var: &str) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os(env_var).map(PathBuf::from)
}

/// What a daemon's `--check-config` prints once its settings parsed and checked.
pub fn checked(program: &str, file: Option<&Path>) -> String {
    match file {
        Some(p) => format!(
            "{program}: configuration ok (flags, environment and {})",
            p.display()
        ),
        None => format!("{program}: configuration ok (flags and environment; no config file)"),
    }
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `argv` with the settings of the config file added. Applies to the top-level command, or
/// to the subcommand named first if that subcommand takes `--config` too; other
/// subcommands get `argv` unchanged.
pub fn argv_with_file(
    cmd: &clap::Command,
    argv: Vec<OsString>,
    env_var: &str,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_path(&argv, env_var) else {
        return Ok(argv);
    };
    let (target, insert_at) = match argv
        .get(1)
        .and_then(|a| cmd.find_subcommand(a.to_string_lossy().as_ref()))
    {
        Some(sub) => (sub, 2),
        None => (cmd, 1),
    };
    if !target
        .get_arguments()
        .any(|a| a.get_long() == Some("config"))
    {
        return Ok(argv);
    }
    let added = settings(target, &argv, &path)?;
    let mut out = argv;
    let tail = out.split_off(insert_at.min(out.len()));
    out.extend(added);
    out.extend(tail);
    Ok(out)
}

fn settings(
    target: &clap::Command,
    argv: &[OsString],
    path: &Path,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let given = |long: &str| {
        argv.iter().any(|a| {
            let s = a.to_string_lossy();
            s == format!("--{long}") || s.starts_with(&format!("--{long}="))
        })
    };
    let mut out = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        if long == "config" {
            continue;
        }
        let Some(arg) = target
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
        else {
            let known: Vec<&str> = target
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| *l != "help" && *l != "version" && *l != "config")
                .collect();
            return Err(ConfigError::Unknown {
                path: path.to_path_buf(),
                key: key.clone(),
                known: known.join(", "),
            });
        };
        if given(&long) {
            continue;
        }
        if let Some(var) = arg.get_env()
            && std::env::var_os(var).is_some()
        {
            continue;
        }
        let bad = |what: &str| ConfigError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
            what: what.to_string(),
        };
        let is_switch = !arg.get_action().takes_values();
        let values: Vec<String> = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(|v| scalar(v).ok_or_else(|| bad("arrays may only hold plain values")))
                .collect::<Result<_, _>>()?,
            v => vec![scalar(v).ok_or_else(|| bad("expected a string, number or boolean"))?],
        };
        for v in values {
            if is_switch {
                match v.as_str() {
                    "true" => out.push(OsString::from(format!("--{long}"))),
                    "false" => {}
                    _ => return Err(bad("a switch takes true or false")),
                }
            } else {
                out.push(OsString::from(format!("--{long}={v}")));
            }
        }
    }
    Ok(out)
}

/// A duration flag's value that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?}: expected a duration like 30s, 5m, 2h or 1d")]
    Malformed(String),
    #[error("{text:?}: unknown unit {unit:?} (use s, m, h or d)")]
    Unit { text: String, unit: String },
}

/// A duration as the daemons' flags and `palisadectl audit tail --since` write it: a whole
/// number and a unit, `s`, `m`, `h` or `d` (`30s`, `5m`, `1h`, `7d`); a bare number is
/// seconds (as a config file's integer reads).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let s = text.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let malformed = || DurationError::Malformed(text.to_string());
    let n: u64 = num.parse().map_err(|_| malformed())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(DurationError::Unit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    let secs = n.checked_mul(scale).ok_or_else(malformed)?;
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    #[test]
    fn durations_take_a_unit_or_are_seconds() {
        use std::time::Duration;
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(matches!(
            parse_duration("5y"),
            Err(DurationError::Unit { .. })
        ));
        assert!(matches!(
            parse_duration("soon"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("1.5h"),
            Err(DurationError::Unit { .. })
        ));
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    fn cmd() -> Command {
        cmd_reading("OPS_TEST_LISTEN_NEVER_SET")
    }

    /// `--listen` also read from `env`: each test that sets a variable uses its own, since
    /// tests run in parallel in one process.
    fn cmd_reading(env: &'static str) -> Command {
        Command::new("d")
            .arg(Arg::new("config").long("config"))
            .arg(Arg::new("listen").long("listen").env(env))
            .arg(Arg::new("data").long("data"))
            .arg(Arg::new("label").long("label").action(ArgAction::Append))
            .arg(Arg::new("json").long("json").action(ArgAction::SetTrue))
            .arg(Arg::new("max-mb").long("max-mb"))
            .subcommand(Command::new("other").arg(Arg::new("x").long("x")))
    }

    fn run(file: &str, args: &[&str]) -> Result<clap::ArgMatches, ConfigError> {
        run_with(cmd(), file, args)
    }

    fn run_with(cmd: Command, file: &str, args: &[&str]) -> Result<clap::ArgMatches, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, file).unwrap();
        let mut argv: Vec<OsString> = vec!["d".into(), "--config".into(), p.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        let argv = argv_with_file(&cmd, argv, "OPS_TEST_CONFIG_UNSET")?;
        Ok(cmd.try_get_matches_from(argv).unwrap())
    }

    #[test]
    fn file_fills_in_what_flags_and_environment_do_not_set() {
        let m = run(
            "listen = \"a:1\"\ndata = \"/d\"\nlabel = [\"x=1\", \"y=2\"]\njson = true\nmax_mb = 5\n",
            &["--data", "/cli"],
        )
        .unwrap();
        assert_eq!(m.get_one::<String>("listen").unwrap(), "a:1");
        assert_eq!(
            m.get_one::<String>("data").unwrap(),
            "/cli",
            "command line wins"
        );
        let labels: Vec<&String> = m.get_many("label").unwrap().collect();
        assert_eq!(labels, ["x=1", "y=2"]);
        assert!(m.get_flag("json"));
        assert_eq!(m.get_one::<String>("max-mb").unwrap(), "5");
    }

    #[test]
    fn environment_beats_the_file() {
        // SAFETY: this test alone uses this variable.
        unsafe { std::env::set_var("OPS_TEST_LISTEN", "env:2") };
        let m = run_with(cmd_reading("OPS_TEST_LISTEN"), "listen = \"file:1\"\n", &[]).unwrap();
        assert_eq!(m.get_one::<String>("listen").unwrap(), "env:2");
        unsafe { std::env::remove_var("OPS_TEST_LISTEN") };
    }

    #[test]
    fn bad_files_say_where_and_what() {
        let e = run("lisen = \"a\"\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("unknown setting \"lisen\"") && e.contains("listen"),
            "{e}"
        );
        let e = run("listen = \n", &[]).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = run("json = \"yes\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("true or false"), "{e}");
    }
}
