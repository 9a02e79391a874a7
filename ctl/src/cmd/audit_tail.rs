//! `palisadectl audit tail`: recent events, optionally followed, filtered by node, policy,
//! rule, action and time. Filtering happens on the control plane. With several
//! `--controlplane` URLs every replica that answers is read and their events merged
//! ([`crate::audit_merge`]); the ones that do not answer are named on stderr.

use crate::args::TailArgs;
use crate::audit_merge::{self, Live};
use crate::client::{Client, ClientError, answer, chain, refused};
use crate::print::Printer;
use anyhow::{Result, bail};
use palisade_proto::v1::{self, audit_client::AuditClient};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Following several replicas: the recent events are taken as one batch once every stream
/// has been quiet this long (or after [`SETTLE_MAX`]), then events print as they come.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
const SETTLE_MAX: Duration = Duration::from_secs(2);
/// How long a gap waits for the event after it (which settles it) before it prints as is.
const GAP_WAIT: Duration = Duration::from_secs(1);

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
    let req = v1::TailRequest {
        follow: a.follow,
        last: a.last,
        node: a.node.clone().unwrap_or_default(),
        policy: a.policy.clone().unwrap_or_default(),
        rule: a.rule.clone().unwrap_or_default(),
        action: a.action.clone().unwrap_or_default(),
        since_unix_ns,
    };
    if client.urls()?.len() == 1 {
        let mut c = client.audit().await?;
        let mut stream = answer(c.tail(req).await)?;
        while let Some(e) = stream.message().await.map_err(refused)? {
            out.item(&e);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let replicas = client.connect_all().await?;
    for (url, why) in &replicas.down {
        missing(out, url, &format!("it did not answer ({why})"));
    }
    let urls: Vec<String> = replicas.up.iter().map(|(u, _)| u.clone()).collect();
    // Every replica streams into one channel: (which, its next event or why it stopped).
    let (tx, mut rx) = mpsc::channel::<(usize, Result<v1::AuditEvent, ClientError>)>(1024);
    for (i, (_, channel)) in replicas.up.into_iter().enumerate() {
        let (tx, req) = (tx.clone(), req.clone());
        tokio::spawn(async move {
            let mut c = AuditClient::new(channel);
            let mut stream = match answer(c.tail(req).await) {
                Ok(s) => s,
                Err(e) => return drop(tx.send((i, Err(e))).await),
            };
            loop {
                match stream.message().await {
                    Ok(Some(e)) => {
                        if tx.send((i, Ok(e))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(s) => return drop(tx.send((i, Err(refused(s)))).await),
                }
            }
        });
    }
    drop(tx);
    let last = a.last.max(1) as usize;
    // The recent events of every replica, as one batch.
    let mut lists: Vec<Vec<v1::AuditEvent>> = vec![Vec::new(); urls.len()];
    let mut failed = 0;
    let started = Instant::now();
    loop {
        let next = if a.follow {
            let wait = SETTLE_QUIET.min(SETTLE_MAX.saturating_sub(started.elapsed()));
            tokio::time::timeout(wait, rx.recv()).await
        } else {
            Ok(rx.recv().await)
        };
        match next {
            Ok(Some((i, Ok(e)))) => lists[i].push(e),
            Ok(Some((i, Err(e)))) => {
                failed += 1;
                missing(out, &urls[i], &format!("its stream failed ({})", chain(&e)));
            }
            Ok(None) | Err(_) => break,
        }
    }
    let printed = audit_merge::merge(lists, if a.follow { usize::MAX } else { last });
    for e in &printed {
        out.item(e);
    }
    if !a.follow {
        return finish(failed, urls.len());
    }
    let mut live = Live::after(&printed);
    drop(printed);
    let mut waiting_since: std::collections::HashMap<usize, Instant> = Default::default();
    loop {
        let next = match waiting_since.values().min() {
            Some(t) => tokio::time::timeout(GAP_WAIT.saturating_sub(t.elapsed()), rx.recv()).await,
            None => Ok(rx.recv().await),
        };
        match next {
            Ok(Some((i, Ok(e)))) => {
                for e in live.push(i, e) {
                    out.item(&e);
                }
                waiting_since.retain(|w, _| live.waiting().contains(w));
                for w in live.waiting() {
                    waiting_since.entry(w).or_insert_with(Instant::now);
                }
            }
            Ok(Some((i, Err(e)))) => {
                failed += 1;
                missing(out, &urls[i], &format!("its stream failed ({})", chain(&e)));
                if let Some(gap) = live.flush(i) {
                    out.item(&gap);
                }
                waiting_since.remove(&i);
            }
            Ok(None) => break,
            Err(_) => {
                // A gap waited long enough for the event after it.
                let due: Vec<usize> = waiting_since
                    .iter()
                    .filter(|(_, t)| t.elapsed() >= GAP_WAIT)
                    .map(|(w, _)| *w)
                    .collect();
                for w in due {
                    waiting_since.remove(&w);
                    if let Some(gap) = live.flush(w) {
                        out.item(&gap);
                    }
                }
            }
        }
    }
    for w in live.waiting() {
        if let Some(gap) = live.flush(w) {
            out.item(&gap);
        }
    }
    finish(failed, urls.len())
}

/// Says on stderr that the events only `url` holds are not shown, and why.
fn missing(out: Printer, url: &str, why: &str) {
    out.stderr_line(&format_args!(
        "warning: no audit events from control plane {url}: {why}; each replica keeps its own audit log, so events stored only there are not shown"
    ));
}

/// Success unless no replica's stream worked.
fn finish(failed: usize, of: usize) -> Result<ExitCode> {
    if failed == of {
        bail!("no control plane's audit stream worked (see the warnings above)");
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
