//! `palisadectl apply FILE [--rollout all|canary ...] [-w]`: validate, store and roll out.
//! A source over the size limit is refused before connecting, as `validate` refuses it.

use crate::args::{RolloutArgs, Strategy};
use crate::client::{Client, policies_on, refused};
use crate::cmd::rollout;
use crate::policy_file::{PolicyFile, ToSend};
use crate::print::{Printer, revision::Change};
use anyhow::{Context, Result, bail};
use palisade_proto::v1;
use std::path::Path;
use std::process::ExitCode;

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

/// The wire's rollout spec from the flags (None: strategy `all`); canary flags without
/// `--rollout canary` are refused.
pub fn spec(a: &RolloutArgs) -> Result<Option<v1::RolloutSpec>> {
    if a.rollout == Strategy::All {
        let canary_only = [
            ("--canary", a.canary.is_some()),
            ("--wave-size", a.wave_size.is_some()),
            ("--pause", a.pause.is_some()),
            ("--manual", a.manual),
            ("--max-deny-rate", a.max_deny_rate.is_some()),
            ("--wave-timeout", a.wave_timeout.is_some()),
            ("--report-timeout", a.report_timeout.is_some()),
            ("--no-rollback", a.no_rollback),
        ];
        if let Some((flag, _)) = canary_only.iter().find(|(_, set)| *set) {
            bail!("{flag} only applies to a canary rollout: add --rollout canary");
        }
        return Ok(None);
    }
    let size = |o: &Option<String>| o.as_deref().map(parse_size).transpose();
    let (canary_nodes, canary_percent) = size(&a.canary)?.unwrap_or((0, 0));
    let (wave_nodes, wave_percent) = size(&a.wave_size)?.unwrap_or((0, 0));
    let ms = |o: &Option<String>| {
        o.as_deref()
            .map(parse_duration_ms)
            .transpose()
            .map(|v| v.unwrap_or(0))
    };
    Ok(Some(v1::RolloutSpec {
        strategy: palisade_proto::rollout::Strategy::Canary.as_str().into(),
        canary_nodes,
        canary_percent,
        wave_nodes,
        wave_percent,
        pause_ms: ms(&a.pause)?,
        manual: a.manual,
        max_deny_rate: a.max_deny_rate.unwrap_or(0.0),
        wave_timeout_ms: ms(&a.wave_timeout)?,
        report_timeout_ms: ms(&a.report_timeout)?,
        no_rollback: a.no_rollback,
    }))
}

pub async fn run(
    client: &Client<'_>,
    out: Printer,
    file: &Path,
    args: &RolloutArgs,
) -> Result<ExitCode> {
    let spec = spec(args)?;
    let source = match PolicyFile::read_to_send(file)? {
        ToSend::Source(s) => s,
        ToSend::TooLarge(f) => {
            out.diagnostics(&f.checked, &f.source)?;
            out.stderr_line(&format!("{}: not applied; nothing was sent", f.name));
            return Ok(ExitCode::from(1));
        }
    };
    let channel = client.connect().await?;
    let mut c = policies_on(channel.clone());
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
            out.stderr_line(&s.message());
            return Ok(ExitCode::from(1));
        }
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
            out.error(&s.message());
            return Ok(ExitCode::from(1));
        }
        Err(s) => return Err(refused(s).into()),
    };
    for w in &resp.warnings {
        out.stderr(&w.rendered);
    }
    out.item(&Change {
        what: "applied",
        response: &resp,
    });
    if args.watch && resp.changed {
        return rollout::watch(channel, out, &resp.policy, false).await;
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
