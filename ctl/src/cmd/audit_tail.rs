//! `palisadectl audit tail`: recent events, optionally followed, filtered by node, policy,
//! rule, action and time. Filtering happens on the control plane. With several
//! `--controlplane` URLs every replica that answers is read and their events merged
//! ([`crate::audit_merge`]); the ones that do not answer are named on stderr.

use crate::args::TailArgs;
use crate::audit_merge::{self, Live};
use crate::client::{
    Client, ClientError, REPLICA_CONNECT_TIMEOUT, answer, chain, connect_to, refused,
};
use crate::print::Printer;
use anyhow::{Result, bail};
use palisade_proto::event::EventView;
use palisade_proto::v1::{self, audit_client::AuditClient};
use prost::Message;
use prost::bytes::Bytes;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Following several replicas: the recent events are taken as one batch once every stream
/// has been quiet this long (or after [`SETTLE_MAX`]), then events print as they come.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
const SETTLE_MAX: Duration = Duration::from_secs(2);
/// Following, how often a replica that is down (or whose stream failed) is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How far back a replica read again is resumed, in its matching events.
const RESUME_LAST: u32 = 10_000;

/// `since` as Unix nanoseconds: Unix seconds, or a duration back from `now_ns` (as the
/// daemons' duration flags read it).
pub fn parse_since(s: &str, now_ns: i64) -> Result<i64> {
    use palisade_ops::config::{DurationError, parse_duration};
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1_000_000_000);
    }
    match parse_duration(s) {
        Ok(d) => Ok(now_ns.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))),
        Err(DurationError::Unit { unit, .. }) => {
            bail!("--since {s:?}: unknown unit {unit:?} (use s, m, h or d)")
        }
        Err(DurationError::Malformed(_)) => {
            bail!("--since {s:?}: expected a duration like 30s, 5m, 2h, 1d or Unix seconds")
        }
    }
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
    // Every replica the store knows, not only those named: each keeps its own log.
    let extra = if a.named_only {
        Vec::new()
    } else {
        client.undiscovered_replicas().await
    };
    if !extra.is_empty() {
        out.stderr_line(&format_args!(
            "note: also reading the replica{} the store lists beyond --controlplane: {}",
            if extra.len() == 1 { "" } else { "s" },
            extra.join(", ")
        ));
        let mut to = client.connection().clone();
        to.controlplane = format!("{},{}", to.controlplane, extra.join(","));
        return tail_merged(&Client::new(&to, out), out, req).await;
    }
    if client.urls()?.len() > 1 {
        return tail_merged(client, out, req).await;
    }
    let mut c = client.audit().await?;
    let mut stream = Events::open(&mut c, req).await?;
    while let Some(batch) = stream.next_batch().await? {
        // Read in place: nothing is copied out of what arrived but the printed line.
        let mut views = Vec::with_capacity(batch.len());
        for raw in &batch {
            match EventView::decode(raw) {
                Ok(v) => views.push(v),
                Err(e) => return Err(ClientError::BadEvent(e.to_string()).into()),
            }
        }
        out.items(views.iter().map(|e| e as &dyn crate::print::Render));
    }
    Ok(ExitCode::SUCCESS)
}

/// A subscription's events: from `Follow` (in batches), or from `Tail` (one message per
/// event) when the control plane predates `Follow`.
enum Events {
    /// Each event as the control plane stored it (an encoded `AuditEvent`).
    Batches(tonic::Streaming<v1::AuditEvents>, std::vec::IntoIter<Bytes>),
    Single(tonic::Streaming<v1::AuditEvent>),
}

impl Events {
    async fn open(
        c: &mut AuditClient<tonic::transport::Channel>,
        req: v1::TailRequest,
    ) -> Result<Events, ClientError> {
        match c.follow(req.clone()).await {
            Ok(r) => Ok(Events::Batches(r.into_inner(), Vec::new().into_iter())),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                Ok(Events::Single(answer(c.tail(req).await)?))
            }
            Err(s) => Err(refused(s)),
        }
    }

    /// What arrived together (never empty), encoded; `None` at the end.
    async fn next_batch(&mut self) -> Result<Option<Vec<Bytes>>, ClientError> {
        loop {
            let got = match self {
                Events::Single(s) => s
                    .message()
                    .await
                    .map_err(refused)?
                    .map(|e| vec![Bytes::from(e.encode_to_vec())]),
                Events::Batches(s, batch) => {
                    let rest: Vec<_> = batch.collect();
                    if !rest.is_empty() {
                        return Ok(Some(rest));
                    }
                    s.message().await.map_err(refused)?.map(|b| b.events)
                }
            };
            match got {
                Some(b) if b.is_empty() => continue,
                other => return Ok(other),
            }
        }
    }

    async fn next(&mut self) -> Result<Option<v1::AuditEvent>, ClientError> {
        match self {
            Events::Single(s) => s.message().await.map_err(refused),
            Events::Batches(s, batch) => loop {
                if let Some(raw) = batch.next() {
                    return v1::AuditEvent::decode(raw)
                        .map(Some)
                        .map_err(|e| ClientError::BadEvent(e.to_string()));
                }
                match s.message().await.map_err(refused)? {
                    Some(b) => *batch = b.events.into_iter(),
                    None => return Ok(None),
                }
            },
        }
    }
}

/// What the task reading replica `i` reports.
enum Report {
    Event(Box<v1::AuditEvent>),
    /// Its stream failed or ended, or it could not be reached again (why); following, it
    /// is retried.
    Lost(String),
    /// Following: it is read again after it was lost.
    Back,
}

type FromReplica = (usize, Report);

/// `audit tail` over every replica that answers, merged. Following, a replica that is
/// down or whose stream fails is tried again every [`RETRY`].
async fn tail_merged(client: &Client<'_>, out: Printer, req: v1::TailRequest) -> Result<ExitCode> {
    let replicas = client.connect_all().await?;
    let tls = client.tls()?;
    let retry = if req.follow {
        "; trying it again every second"
    } else {
        ""
    };
    for (url, why) in &replicas.down {
        missing(out, url, &format!("it did not answer ({why}){retry}"));
    }
    // As the control plane reads `--last 0`.
    let last = if req.last == 0 {
        100
    } else {
        req.last as usize
    };
    let follow = req.follow;
    let mut urls: Vec<String> = Vec::new();
    let mut working = Vec::new();
    // Every replica streams into one channel.
    let (tx, mut rx) = mpsc::channel::<FromReplica>(1024);
    // Following, the ones down now are tried again too.
    let up = replicas.up.into_iter().map(|(url, ch)| (url, Some(ch)));
    let down = replicas.down.into_iter().filter(|_| follow);
    for (i, (url, channel)) in up.chain(down.map(|(url, _)| (url, None))).enumerate() {
        let reader = Reader {
            i,
            url: url.clone(),
            tls: tls.clone(),
            req: req.clone(),
            tx: tx.clone(),
        };
        working.push(channel.is_some());
        tokio::spawn(reader.run(channel));
        urls.push(url);
    }
    drop(tx);
    let mut report = |i: usize, r: Report| -> Option<v1::AuditEvent> {
        match r {
            Report::Event(e) => return Some(*e),
            Report::Lost(e) if working[i] => {
                working[i] = false;
                missing(out, &urls[i], &format!("{e}{retry}"));
            }
            Report::Lost(_) => {}
            Report::Back => {
                working[i] = true;
                out.stderr_line(&format_args!(
                    "note: control plane {} answers again; reading its audit events",
                    urls[i]
                ));
            }
        }
        None
    };
    // The recent events of every replica, as one batch: all of them, or (following) what
    // came before every stream was quiet for a moment.
    let mut lists: Vec<Vec<v1::AuditEvent>> = vec![Vec::new(); urls.len()];
    let started = Instant::now();
    loop {
        let next = if follow {
            let wait = SETTLE_QUIET.min(SETTLE_MAX.saturating_sub(started.elapsed()));
            tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
        } else {
            rx.recv().await
        };
        let Some((i, r)) = next else { break };
        if let Some(e) = report(i, r) {
            lists[i].push(e);
        }
    }
    let printed = audit_merge::merge(lists, if follow { usize::MAX } else { last });
    for e in &printed {
        out.item(e);
    }
    if !follow {
        if working.iter().all(|w| !w) {
            bail!("no control plane's audit stream worked (see the warnings above)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut live = Live::after(&printed);
    drop(printed);
    loop {
        let next = match live.next_due() {
            Some(due) => match tokio::time::timeout(due, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    for gap in live.overdue() {
                        out.item(&gap);
                    }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some((i, r)) = next else { break };
        let lost = matches!(r, Report::Lost(_));
        if let Some(e) = report(i, r) {
            for e in live.push(i, e) {
                out.item(&e);
            }
        }
        if lost && let Some(gap) = live.flush(i) {
            out.item(&gap);
        }
    }
    for gap in live.drain() {
        out.item(&gap);
    }
    Ok(ExitCode::SUCCESS)
}

/// The task reading one replica's events.
struct Reader {
    i: usize,
    url: String,
    tls: tonic::transport::ClientTlsConfig,
    req: v1::TailRequest,
    tx: mpsc::Sender<FromReplica>,
}

impl Reader {
    /// Reads the replica on `channel` (or connects first, without one). Following, a
    /// failed stream or connect is retried every [`RETRY`]: the new subscription starts
    /// [`RESUME_LAST`] events back and skips what was sent before (a replica's event ids
    /// only grow), so more events than that stored while it was not read are not shown
    /// (resuming exactly would need the API to take an event id to start after).
    async fn run(self, mut channel: Option<tonic::transport::Channel>) {
        let mut last_id = 0;
        let mut lost = channel.is_none();
        loop {
            let ch = match channel.take() {
                Some(ch) => Ok(ch),
                None => {
                    connect_to(self.url.clone(), self.tls.clone(), REPLICA_CONNECT_TIMEOUT).await
                }
            };
            let why = match ch {
                Ok(ch) => match self.read(ch, &mut last_id, &mut lost).await {
                    Ok(()) if !self.req.follow => return,
                    Ok(()) => "its stream ended".to_string(),
                    Err(e) => format!("its stream failed ({})", chain(&e)),
                },
                Err(e) => format!("it did not answer ({})", chain(&e)),
            };
            lost = true;
            if self.tx.send((self.i, Report::Lost(why))).await.is_err() || !self.req.follow {
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One subscription: every event with an id above `last_id` until the stream ends.
    async fn read(
        &self,
        channel: tonic::transport::Channel,
        last_id: &mut u64,
        lost: &mut bool,
    ) -> Result<(), ClientError> {
        let mut req = self.req.clone();
        if *last_id > 0 {
            req.last = req.last.max(RESUME_LAST);
        }
        let mut c = AuditClient::new(channel);
        let mut stream = Events::open(&mut c, req).await?;
        if std::mem::take(lost) && self.tx.send((self.i, Report::Back)).await.is_err() {
            return Ok(());
        }
        while let Some(e) = stream.next().await? {
            if e.id != 0 && e.id <= *last_id {
                continue;
            }
            *last_id = e.id.max(*last_id);
            if self
                .tx
                .send((self.i, Report::Event(Box::new(e))))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Says on stderr that the events only `url` holds are not shown, and why.
fn missing(out: Printer, url: &str, why: &str) {
    out.stderr_line(&format_args!(
        "warning: no audit events from control plane {url}: {why}; each replica keeps its own audit log, so events stored only there are not shown"
    ));
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
