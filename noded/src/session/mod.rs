//! The node's session with the control plane: connect over mutual TLS, register, enforce
//! every desired state it is sent, report status, forward audit events; reconnect with
//! backoff when the connection drops. Enforcement never depends on the session: the last
//! enforced state stays in the kernel while the control plane is away.
//!
//! Audit events go through the [`Spool`]: each session (re)sends every unacknowledged
//! event in batches, and forgets them as the control plane acknowledges them.

pub mod cache;
pub mod metrics;
pub mod spool;

use crate::enforce::Enforcer;
use crate::session::cache::NodeCache;
use crate::session::spool::{Spool, SpoolError};
use palisade_pki::{CertPaths, PkiDir, PkiError};
use palisade_proto::v1::{self, control_message, node_message, nodes_client::NodesClient};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Most events sent in one batch.
const MAX_BATCH: usize = 512;
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
    pub url: String,
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

/// Connects a channel with the node's mutual-TLS identity.
pub async fn connect(cfg: &SessionConfig) -> Result<Channel, SessionError> {
    let tls = cfg.pki.client_tls(&cfg.identity, &cfg.server_name)?;
    let endpoint = Endpoint::from_shared(cfg.url.clone())
        .map_err(|source| SessionError::Url {
            url: cfg.url.clone(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(20)))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .tls_config(tls)
        .map_err(|source| SessionError::Url {
            url: cfg.url.clone(),
            source,
        })?;
    endpoint
        .connect()
        .await
        .map_err(|source| SessionError::Connect {
            url: cfg.url.clone(),
            source,
        })
}

/// Opens the spool, starts moving `events` into it and watching the kernel's loss
/// counters, then runs sessions forever, reconnecting with exponential backoff (0.5 s to
/// 10 s).
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
    let connected = Arc::new(AtomicBool::new(false));
    if let Some(addr) = &cfg.metrics {
        let at = crate::session::metrics::serve(
            addr,
            enforcer.clone(),
            spool.clone(),
            connected.clone(),
            cfg.exec_events_lost.clone(),
        )
        .await
        .map_err(|e| SessionError::Metrics(e.to_string()))?;
        tracing::info!(addr = %at, "metrics on http://{at}/metrics");
    }
    run_with_spool(cfg, enforcer, events, spool, connected, cache).await;
    Ok(())
}

/// [`run`] with a spool the caller keeps a handle on (for metrics). Every desired state
/// enforced without error is stored in `cache`, when given.
pub async fn run_with_spool(
    cfg: SessionConfig,
    enforcer: Arc<Mutex<Enforcer>>,
    events: mpsc::Receiver<v1::AuditEvent>,
    spool: Arc<Mutex<Spool>>,
    connected: Arc<AtomicBool>,
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
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut registered = false;
        let outcome = session_once(
            &cfg,
            &enforcer,
            &spool,
            &notify,
            &mut registered,
            &connected,
            cache.as_deref(),
        )
        .await;
        connected.store(false, std::sync::atomic::Ordering::Relaxed);
        match outcome {
            Ok(()) => tracing::warn!("control plane closed the session; reconnecting"),
            Err(SessionError::Rejected(why)) => {
                tracing::error!(reason = %why, "control plane rejected this node; retrying later");
            }
            Err(e) => tracing::warn!(error = %e, "session with the control plane failed; retrying"),
        }
        if registered {
            backoff = Duration::from_millis(500);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn session_once(
    cfg: &SessionConfig,
    enforcer: &Arc<Mutex<Enforcer>>,
    spool: &Arc<Mutex<Spool>>,
    notify: &Notify,
    registered: &mut bool,
    connected: &AtomicBool,
    cache: Option<&NodeCache>,
) -> Result<(), SessionError> {
    let channel = connect(cfg).await?;
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
    *registered = true;
    connected.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(url = %cfg.url, node = %cfg.name, "session with the control plane established");

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
                let batch = spool.lock().expect("spool lock").after(sent, MAX_BATCH);
                if let Some(last) = batch.last() {
                    sent = last.seq;
                }
                permit.send(send(node_message::Msg::Audit(v1::AuditBatch { events: batch, stream: stream.clone() })));
            }
            _ = notify.notified(), if !unsent => {}
        }
    }
}
