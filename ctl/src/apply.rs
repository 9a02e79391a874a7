//! `palisadectl apply FILE [--rollout all|canary ...] [-w]`: validate, store and roll out.

use crate::output::Format;
use crate::revision_out::print_change;
use crate::{Cli, connect, rollout, status};
use anyhow::{Context, Result, bail};
use palisade_proto::v1::{self, policies_client::PoliciesClient};
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every selected node at once.
    All,
    /// A first wave, then waves of --wave-size, with a health gate between waves.
    Canary,
}

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    /// How the new revision reaches the nodes.
    #[arg(long, value_enum, default_value = "all")]
    rollout: Strategy,
    /// Canary: size of the first wave, in nodes ("2") or percent ("10%"). Default 1 node.
    #[arg(long, value_name = "N|P%")]
    canary: Option<String>,
    /// Canary: size of every later wave, in nodes or percent. Default 25%.
    #[arg(long, value_name = "N|P%")]
    wave_size: Option<String>,
    /// Canary: how long each realized wave is watched by the gate before the next starts
    /// (e.g. 30s, 2m). Default 10s.
    #[arg(long, value_name = "DURATION")]
    pause: Option<String>,
    /// Canary: wait for `palisadectl rollout resume` after each wave passes its gate.
    #[arg(long)]
    manual: bool,
    /// Canary gate: most deny (or would-deny) events per second per node of a wave since it
    /// started. Default: no limit.
    #[arg(long, value_name = "PER_SEC")]
    max_deny_rate: Option<f64>,
    /// Canary gate: a node that has not realized the revision after this long fails the
    /// wave. Default 2m.
    #[arg(long, value_name = "DURATION")]
    wave_timeout: Option<String>,
    /// Canary gate: a node without a status for this long fails the wave. Default 10s.
    #[arg(long, value_name = "DURATION")]
    report_timeout: Option<String>,
    /// Canary: when a gate fails, halt but keep the updated nodes on the new revision
    /// (the default rolls them back).
    #[arg(long)]
    no_rollback: bool,
    /// Follow the rollout until it finishes (exit status 1 if it is rolled back or halts).
    #[arg(short = 'w', long)]
    watch: bool,
}

/// "30s", "2m", "500ms", "1h", or plain seconds.
pub fn parse_duration_ms(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}: use e.g. 500ms, 30s, 2m, 1h"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => bail!("invalid duration {s:?}: the unit is one of ms, s, m, h"),
    };
    Ok(ms.round() as u64)
}

/// "5" (nodes) or "10%" (percent): (nodes, percent).
pub fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || format!("invalid size {s:?}: a number of nodes (\"3\") or a percentage (\"10%\")");
    match s.trim().strip_suffix('%') {
        Some(p) => {
            let p: u32 = p.trim().parse().with_context(bad)?;
            if p == 0 || p > 100 {
                bail!("invalid percentage {s:?}: between 1% and 100%");
            }
            Ok((0, p))
        }
        None => {
            let n: u32 = s.trim().parse().with_context(bad)?;
            if n == 0 {
                bail!("invalid size {s:?}: at least 1 node");
            }
            Ok((n, 0))
        }
    }
}

impl RolloutArgs {
    pub fn spec(&self) -> Result<Option<v1::RolloutSpec>> {
        if self.rollout == Strategy::All {
            let canary_only = [
                ("--canary", self.canary.is_some()),
                ("--wave-size", self.wave_size.is_some()),
                ("--pause", self.pause.is_some()),
                ("--manual", self.manual),
                ("--max-deny-rate", self.max_deny_rate.is_some()),
                ("--wave-timeout", self.wave_timeout.is_some()),
                ("--report-timeout", self.report_timeout.is_some()),
                ("--no-rollback", self.no_rollback),
            ];
            if let Some((flag, _)) = canary_only.iter().find(|(_, set)| *set) {
                bail!("{flag} only applies to a canary rollout: add --rollout canary");
            }
            return Ok(None);
        }
        let (canary_nodes, canary_percent) = self
            .canary
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or((0, 0));
        let (wave_nodes, wave_percent) = self
            .wave_size
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or((0, 0));
        let ms = |o: &Option<String>| {
            o.as_deref()
                .map(parse_duration_ms)
                .transpose()
                .map(|v| v.unwrap_or(0))
        };
        Ok(Some(v1::RolloutSpec {
            strategy: "canary".into(),
            canary_nodes,
            canary_percent,
            wave_nodes,
            wave_percent,
            pause_ms: ms(&self.pause)?,
            manual: self.manual,
            max_deny_rate: self.max_deny_rate.unwrap_or(0.0),
            wave_timeout_ms: ms(&self.wave_timeout)?,
            report_timeout_ms: ms(&self.report_timeout)?,
            no_rollback: self.no_rollback,
        }))
    }
}

pub async fn run(cli: &Cli, file: &Path, args: &RolloutArgs) -> Result<ExitCode> {
    let spec = args.spec()?;
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let channel = connect(cli).await?;
    let mut c = PoliciesClient::new(channel.clone());
    let resp = c
        .apply(v1::ApplyRequest {
            file: file.display().to_string(),
            source,
            rollout: spec,
        })
        .await;
    let resp = match resp {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            eprintln!("{}", s.message());
            return Ok(ExitCode::from(1));
        }
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
            eprintln!("error: {}", s.message());
            return Ok(ExitCode::from(1));
        }
        Err(s) => return Err(status(s)),
    };
    for w in &resp.warnings {
        eprint!("{}", w.rendered);
    }
    print_change("applied", &resp, cli.output);
    if args.watch && resp.changed {
        return rollout::watch(channel, &resp.policy, cli.output == Format::Json, false).await;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration_ms("30s").unwrap(), 30_000);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert_eq!(parse_duration_ms("2m").unwrap(), 120_000);
        assert_eq!(parse_duration_ms("1.5s").unwrap(), 1500);
        assert_eq!(parse_duration_ms("7").unwrap(), 7000);
        assert!(parse_duration_ms("3 weeks").is_err());
        assert_eq!(parse_size("3").unwrap(), (3, 0));
        assert_eq!(parse_size("10%").unwrap(), (0, 10));
        assert!(parse_size("0").is_err());
        assert!(parse_size("150%").is_err());
        assert!(parse_size("a few").is_err());
    }
}
