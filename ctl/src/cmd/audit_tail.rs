//! `palisadectl audit tail`: recent events, optionally followed, filtered by node, policy,
//! rule, action and time. Filtering happens on the control plane.

use crate::args::TailArgs;
use crate::client::{Client, answer, refused};
use crate::print::Printer;
use anyhow::{Result, bail};
use palisade_proto::v1;
use std::process::ExitCode;

/// `since` as Unix nanoseconds.
pub fn parse_since(s: &str, now_ns: i64) -> Result<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1_000_000_000);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let Ok(n) = num.parse::<i64>() else {
        bail!("--since {s:?}: expected a duration like 30s, 5m, 2h, 1d or Unix seconds");
    };
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--since {s:?}: unknown unit {unit:?} (use s, m, h or d)"),
    };
    Ok(now_ns - secs * 1_000_000_000)
}

pub async fn run(client: &Client<'_>, out: Printer, a: &TailArgs) -> Result<ExitCode> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    let since_unix_ns = match &a.since {
        Some(s) => parse_since(s, now_ns)?,
        None => 0,
    };
    let mut c = client.audit().await?;
    let req = v1::TailRequest {
        follow: a.follow,
        last: a.last,
        node: a.node.clone().unwrap_or_default(),
        policy: a.policy.clone().unwrap_or_default(),
        rule: a.rule.clone().unwrap_or_default(),
        action: a.action.clone().unwrap_or_default(),
        since_unix_ns,
    };
    let mut stream = answer(c.tail(req).await)?;
    while let Some(e) = stream.message().await.map_err(refused)? {
        out.item(&e);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_unix_seconds() {
        let now = 10_000 * 1_000_000_000;
        assert_eq!(parse_since("30s", now).unwrap(), now - 30_000_000_000);
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000_000_000);
        assert_eq!(
            parse_since("1700000000", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_since("5y", now).is_err());
        assert!(parse_since("soon", now).is_err());
    }
}
