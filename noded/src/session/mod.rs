//! The node's session with the control plane: connect over mutual TLS, register, enforce
//! every desired state it is sent, report status, forward audit events; reconnect with
//! backoff when the connection drops, failing over between the control plane's replicas
//! when several URLs are given ([`failover`]). Enforcement never depends on the session:
//! the last enforced state stays in the kernel while the control plane is away.
//!
//! Audit events go through the [`Spool`]: each session (re)sends every unacknowledged
//! event in batches, and forgets them as the control plane acknowledges them. A session
//! with another replica starts from what the last one acknowledged, so what the old
//! replica did not acknowledge reaches the new one (which drops what it already has by
//! sequence number).

pub mod cache;
pub mod failover;
pub mod metrics;
pub mod spool;

use crate::enforce::Enforcer;
use crate::session::cache::NodeCache;
use crate::session::failover::Rotation;
use crate::session::spool::{Spool, SpoolError};
use palisade_pki::{CertPaths, PkiDir, PkiError};
use palisade_proto::v1::{self, control_message, node_message, nodes_client::NodesClient};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Most events sent in one batch.
const MAX_BATCH: usize = 2048;
/// Most bytes in one batch (the control plane accepts messages of 4 MiB).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// How often the status (with rule counters) is re-sent.
const STATUS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid control plane URL {url:?}: {source}")]
    Url {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("TLS setup: {0}")]
    Pki(#[from] PkiError),
    #[error("cannot connect to the control plane at {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("control plane: {0}")]
    Status(#[from] tonic::Status),
    #[error("the control plane rejected this node: {0}")]
    Rejected(String),
    #[error("session closed")]
    Closed,
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("{0}")]
    Metrics(String),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The control plane's replicas, tried in this order (at least one; see
    /// [`failover::parse_urls`]).
    pub urls: Vec<String>,
    pub server_name: String,
    pub pki: PkiDir,
    pub identity: CertPaths,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Vec<v1::Capability>,
    /// Spool file for unacknowledged audit events; None keeps them in memory only.
    pub spool: Option<PathBuf>,
    /// Most unacknowledged events kept; the rest are counted and reported as lost.
    pub spool_max_events: usize,
    /// Serve Prometheus metrics on this address.
    pub metrics: Option<String>,
    /// Exec events the exec tracker lost to a full ring buffer (`None`: no exec tracking),
    /// exposed by the metrics.
    pub exec_events_lost: Option<Arc<AtomicU64>>,
    /// How often the status (with rule counters) is re-sent even when nothing changed.
    pub status_every: Duration,
}

impl SessionConfig {
    /// The default period of unsolicited status reports.
    pub const STATUS_EVERY: Duration = STATUS_EVERY;
}

/// Whether the session is up, and with which control plane URL: shared with the metrics
/// and the simulator.
#[derive(Debug, Default)]
pub struct Link {
    connected: AtomicBool,
    url: Mutex<String>,
}

impl Link {
    /// Whether a session with a control plane is established now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The URL of the control plane the session is established with, while it is.
    pub fn url(&self) -> Option<String> {
        let url = self.url.lock().expect("link lock");
        (self.connected() && !url.is_empty()).then(|| url.clone())
    }

    fn up(&self, url: &str) {
        *self.url.lock().expect("link lock") = url.to_string();
        self.connected.store(true, Ordering::Relaxed);
    }

    fn down(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }
}

/// Connects a channel to `url` with the node's mutual-TLS identity. With several control
/// plane URLs a connect gives up sooner (2 s, not 5 s), so an unreachable replica delays
/// failing over to the next one less.
pub async fn connect(cfg: &SessionConfig, url: &str) -> Result<Channel, SessionError> {
    let tls = cfg.pki.client_tls(&cfg.identity, &cfg.server_name)?;
    let timeout = if cfg.urls.len() > 1 {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(5)
    };
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|source| SessionError::Url {
            url: url.to_string(),
            source,
        })?
        .connect_timeout(timeout)
        .initial_stream_window_size(palisade_proto::STREAM_WINDOW)
        .initial_connection_window_size(palisade_proto::CONNECTION_WINDOW)
        .tcp_keepalive(Some(Duration::from_secs(20)))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .tls_config(tls)
        .map_err(|source| SessionError::Url {
            url: url.to_string(),
            source,
        })?;
    endpoint
        .connect()
        .await
        .map_err(|source| SessionError::Connect {
            url: url.to_string(),
            source,
        })
}

/// Opens the spool, starts moving `events` into it and watching the kernel's loss
/// counters, then runs sessions forever, reconnecting (to the next URL, if there are
/// several) with exponential backoff (0.5 s to 10 s, jittered) per pass over the URLs.
pub async fn run(
    cfg: SessionConfig,
    enforcer: Arc<Mutex<Enforcer>>,
    events: mpsc::Receiver<v1::AuditEvent>,
    cache: Option<Arc<NodeCache>>,
) -> Result<(), SessionError> {
    let spool = Arc::new(Mutex::new(Spool::open(
        cfg.spool.as_deref(),
        cfg.spool_max_events,
    )?));
    let link = Arc::new(Link::default());
    if let Some(addr) = &cfg.metrics {
        let at = crate::session::metrics::serve(
            addr,
            enforcer.clone(),
            spool.clone(),
            link.clone(),
            cfg.exec_events_lost.clone(),
        )
        .await
        .map_err(|e| SessionError::Metrics(e.to_string()))?;
        tracing::info!(addr = %at, "metrics on http://{at}/metrics");
    }
    run_with_spool(cfg, enforcer, events, spool, link, cache).await;
    Ok(())
}

/// [`run`] with a spool and a [`Link`] the caller keeps a handle on (for metrics). Every
/// desired state enforced without error is stored in `cache`, when given.
pub async fn run_with_spool(
    cfg: SessionConfig,
    enforcer: Arc<Mutex<Enforcer>>,
    events: mpsc::Receiver<v1::AuditEvent>,
    spool: Arc<Mutex<Spool>>,
    link: Arc<Link>,
    cache: Option<Arc<NodeCache>>,
) {
    let notify = Arc::new(Notify::new());
    tokio::spawn(spool::collect(events, spool.clone(), notify.clone()));
    tokio::spawn(spool::watch_kernel_counters(
        enforcer.clone(),
        spool.clone(),
        notify.clone(),
        Duration::from_secs(1),
    ));
    let mut rotation = Rotation::new(cfg.urls.clone());
    loop {
        let url = rotation.current().to_string();
        let mut established = None;
        let outcome = session_once(
            &cfg,
            &url,
            &enforcer,
            &spool,
            &notify,
            &mut established,
            &link,
            cache.as_deref(),
        )
        .await;
        link.down();
        let wait = rotation.ended(established.map(|t: Instant| t.elapsed()));
        let next = rotation.current();
        match outcome {
            Ok(()) => {
                tracing::warn!(url = %url, next = %next, "control plane closed the session; reconnecting")
            }
            Err(SessionError::Rejected(why)) => {
                tracing::error!(url = %url, next = %next, reason = %why, "control plane rejected this node; retrying later");
            }
            Err(e) => {
                tracing::warn!(url = %url, next = %next, error = %causes(&e), "session with the control plane failed; retrying")
            }
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// `e` and its causes on one line: "cannot connect ...: transport error: tcp connect
/// error: Connection refused (os error 111)".
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        src = s.source();
    }
    text
}

#[allow(clippy::too_many_arguments)]
async fn session_once(
    cfg: &SessionConfig,
    url: &str,
    enforcer: &Arc<Mutex<Enforcer>>,
    spool: &Arc<Mutex<Spool>>,
    notify: &Notify,
    established: &mut Option<Instant>,
    link: &Link,
    cache: Option<&NodeCache>,
) -> Result<(), SessionError> {
    let channel = connect(cfg, url).await?;
    let mut client = NodesClient::new(channel);
    let (tx, rx) = mpsc::channel::<v1::NodeMessage>(64);
    let send = |m: node_message::Msg| v1::NodeMessage { msg: Some(m) };
    tx.send(send(node_message::Msg::Register(v1::Register {
        name: cfg.name.clone(),
        labels: cfg.labels.clone().into_iter().collect(),
        capabilities: cfg.capabilities.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })))
    .await
    .map_err(|_| SessionError::Closed)?;
    let status = enforcer.lock().expect("enforcer lock").status();
    tx.send(send(node_message::Msg::Status(status)))
        .await
        .map_err(|_| SessionError::Closed)?;

    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    *established = Some(Instant::now());
    link.up(url);
    tracing::info!(url = %url, node = %cfg.name, "session with the control plane established");

    // Everything unacknowledged is sent again on a new session; the control plane drops
    // what it already has by sequence number.
    let (mut sent, stream) = {
        let s = spool.lock().expect("spool lock");
        (s.acked(), s.stream().to_string())
    };
    // Counters change with traffic: report the status now and then, not only on changes.
    let mut tick = tokio::time::interval(cfg.status_every);
    tick.tick().await;
    loop {
        let unsent = spool.lock().expect("spool lock").has_after(sent);
        tokio::select! {
            _ = tick.tick() => {
                let status = enforcer.lock().expect("enforcer lock").status();
                tx.send(send(node_message::Msg::Status(status))).await.map_err(|_| SessionError::Closed)?;
            }
            msg = inbound.message() => {
                match msg? {
                    None => return Ok(()),
                    Some(v1::ControlMessage { msg: Some(control_message::Msg::Desired(desired)) }) => {
                        let (unchanged, status) = {
                            let mut e = enforcer.lock().expect("enforcer lock");
                            (e.in_force(&desired), e.apply(&desired))
                        };
                        // What is already in force is already cached.
                        if let Some(cache) = cache
                            && !unchanged
                            && status.last_error.is_empty()
                            && let Err(e) = cache.store(&desired)
                        {
                            tracing::error!(error = %e, "cannot cache the enforced desired state; a restart without the control plane would not know it");
                        }
                        tx.send(send(node_message::Msg::Status(status))).await.map_err(|_| SessionError::Closed)?;
                    }
                    Some(v1::ControlMessage { msg: Some(control_message::Msg::Rejected(r)) }) => {
                        return Err(SessionError::Rejected(r.reason));
                    }
                    Some(v1::ControlMessage { msg: Some(control_message::Msg::AuditAck(a)) }) => {
                        spool.lock().expect("spool lock").ack(a.seq);
                    }
                    Some(_) => {}
                }
            }
            permit = tx.reserve(), if unsent => {
                let permit = permit.map_err(|_| SessionError::Closed)?;
                // Far below the control plane's message limit, however long the events.
                let (batch, acknowledged) = {
                    let s = spool.lock().expect("spool lock");
                    (s.after(sent, MAX_BATCH, MAX_BATCH_BYTES), s.acked())
                };
                if let Some(last) = batch.last() {
                    sent = last.seq;
                }
                let events = batch.into_iter().map(|q| q.bytes).collect();
                permit.send(send(node_message::Msg::Audit(v1::AuditBatch { events, stream: stream.clone(), acknowledged })));
            }
            _ = notify.notified(), if !unsent => {}
        }
    }
}
