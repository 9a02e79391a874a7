//! The connection to the control plane (mutual TLS with the certificate the global flags
//! name) and the requests more than one command makes. A refused call becomes a
//! [`ClientError`] that says why in words.
//!
//! `--controlplane` may name several replicas, comma-separated: a command uses the first
//! that accepts a connection within [`REPLICA_CONNECT_TIMEOUT`], in order, and says on
//! stderr which ones it passed over; [`Client::connect_all`] connects to every one (`audit
//! tail`, as each replica keeps its own audit log).

use crate::args::Connection;
use crate::print::Printer;
use palisade_pki::{PkiDir, PkiError, Role};
use palisade_proto::v1::{
    self, audit_client::AuditClient, nodes_client::NodesClient, policies_client::PoliciesClient,
};
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// How long a connect to one control plane may take when there is only one.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connect to one of several replicas may take before the next is tried.
pub const REPLICA_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no certificate {cert} for identity {identity:?} (use operator, viewer or a node name; create a PKI with `palisadectl pki init {pki}`)"
    )]
    NoCertificate {
        cert: String,
        identity: String,
        pki: String,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("--controlplane {0:?} names no URL")]
    NoUrl(String),
    #[error("invalid control plane URL {url}")]
    Url {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Tls(tonic::transport::Error),
    #[error("cannot connect to the control plane at {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the control plane at {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// Several replicas, none of which answered: each with why.
    #[error("no control plane answered: {}", .0.iter().map(|(url, why)| format!("{url} ({why})")).collect::<Vec<_>>().join("; "))]
    NoneAnswered(Vec<(String, String)>),
    /// A refused TLS handshake only shows up as a transport error on the first request.
    #[error(
        "the control plane closed the connection ({causes}); is this certificate expired, revoked or from another CA? (the control plane logs why)"
    )]
    Closed { causes: String },
    #[error("control plane refused: {} ({:?})", .0.message(), .0.code())]
    Refused(tonic::Status),
    #[error("the control plane sent an audit event that cannot be read: {0}")]
    BadEvent(String),
}

/// A call that failed, as an error that names its causes and the likely reasons. A
/// connection the control plane closes right after the handshake (with TLS 1.3 it checks
/// the client's certificate then) reaches the client as a transport error, or as a
/// cancelled call when the close wins the race with the request; the control plane itself
/// never answers `Cancelled`.
pub fn refused(s: tonic::Status) -> ClientError {
    let closed = (s.code() == tonic::Code::Unknown && s.message().contains("transport error"))
        || s.code() == tonic::Code::Cancelled;
    if closed {
        let mut causes = Vec::new();
        let mut src = std::error::Error::source(&s);
        while let Some(e) = src {
            causes.push(e.to_string());
            src = e.source();
        }
        let causes = if causes.is_empty() {
            s.message().to_string()
        } else {
            causes.join(": ")
        };
        return ClientError::Closed { causes };
    }
    ClientError::Refused(s)
}

/// The answer of a unary call, or why there is none.
pub fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ClientError> {
    r.map(tonic::Response::into_inner).map_err(refused)
}

/// The control plane the global flags name; each command connects once.
pub struct Client<'a> {
    to: &'a Connection,
    out: Printer,
}

/// The `Policies` service on `channel`, decoding messages up to
/// [`palisade_proto::MAX_POLICY_MESSAGE`].
pub fn policies_on(channel: Channel) -> PoliciesClient<Channel> {
    PoliciesClient::new(channel).max_decoding_message_size(palisade_proto::MAX_POLICY_MESSAGE)
}

/// An error and its causes on one line (`what: why: why`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        // tonic repeats a cause's text in its own now and then.
        if !parts.last().is_some_and(|p| p.ends_with(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}

/// Why a connect to one URL failed, without the URL (the caller names it).
fn reason(e: &ClientError) -> String {
    match e {
        ClientError::Connect { source, .. } => chain(source),
        ClientError::Timeout { after, .. } => format!("no answer within {after:?}"),
        other => chain(other),
    }
}

/// The control planes that answered (URL and channel, in the flags' order) and those that
/// did not (URL and why).
#[derive(Default)]
pub struct Replicas {
    pub up: Vec<(String, Channel)>,
    pub down: Vec<(String, String)>,
}

/// The URLs of a comma-separated `--controlplane`, in order.
pub fn split_urls(list: &str) -> Result<Vec<String>, ClientError> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect();
    if urls.is_empty() {
        return Err(ClientError::NoUrl(list.to_string()));
    }
    Ok(urls)
}

/// Connects to `url` (TCP and the TLS handshake), giving up after `timeout`.
pub async fn connect_to(
    url: String,
    tls: ClientTlsConfig,
    timeout: Duration,
) -> Result<Channel, ClientError> {
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|source| ClientError::Url {
            url: url.clone(),
            source,
        })?
        .connect_timeout(timeout)
        .initial_stream_window_size(palisade_proto::STREAM_WINDOW)
        .initial_connection_window_size(palisade_proto::CONNECTION_WINDOW)
        .tls_config(tls)
        .map_err(ClientError::Tls)?;
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(r) => r.map_err(|source| ClientError::Connect { url, source }),
        Err(_) => Err(ClientError::Timeout {
            url,
            after: timeout,
        }),
    }
}

impl<'a> Client<'a> {
    pub fn new(to: &'a Connection, out: Printer) -> Client<'a> {
        Client { to, out }
    }

    /// The connection the flags describe.
    pub fn connection(&self) -> &Connection {
        self.to
    }

    /// Replicas the store has registered that none of the given URLs reaches (each
    /// reachable URL is asked which replica it is): their advertised URLs. Best effort:
    /// empty when the control plane cannot say (sled, an older version).
    pub async fn undiscovered_replicas(&self) -> Vec<String> {
        let Ok(given) = self.connect_all().await else {
            return Vec::new();
        };
        let mut covered = std::collections::BTreeSet::new();
        let mut registered: Vec<(String, String)> = Vec::new();
        for (_, channel) in given.up {
            let mut c = NodesClient::new(channel);
            if let Ok(r) = c.control_planes(v1::ControlPlanesRequest {}).await {
                for x in r.into_inner().replicas {
                    if x.this_one {
                        covered.insert(x.id.clone());
                    }
                    if !registered.iter().any(|(id, _)| *id == x.id) {
                        registered.push((x.id, x.url));
                    }
                }
            }
        }
        let urls = self.urls().unwrap_or_default();
        registered
            .into_iter()
            .filter(|(id, url)| !covered.contains(id) && !urls.contains(url))
            .map(|(_, url)| url)
            .collect()
    }

    /// The control plane URLs the flags name, in order.
    pub fn urls(&self) -> Result<Vec<String>, ClientError> {
        split_urls(&self.to.controlplane)
    }

    /// The TLS configuration with the chosen identity's certificate.
    pub fn tls(&self) -> Result<ClientTlsConfig, ClientError> {
        let to = self.to;
        let pki = PkiDir::new(&to.pki);
        // A role name picks that role's certificate; anything else names a node's.
        let role: Role = to.identity.parse().unwrap_or(Role::Node);
        let paths = pki.cert_paths(role, &to.identity);
        if !paths.cert.exists() {
            return Err(ClientError::NoCertificate {
                cert: paths.cert.display().to_string(),
                identity: to.identity.clone(),
                pki: to.pki.display().to_string(),
            });
        }
        Ok(pki.client_tls(&paths, &to.tls_server_name)?)
    }

    /// A channel over mutual TLS with the chosen identity's certificate, to the first
    /// control plane (of several, in order) that accepts a connection; the ones passed over
    /// are named on stderr.
    pub async fn connect(&self) -> Result<Channel, ClientError> {
        let urls = self.urls()?;
        let tls = self.tls()?;
        if let [url] = &urls[..] {
            return connect_to(url.clone(), tls, CONNECT_TIMEOUT).await;
        }
        let mut failed: Vec<(String, String)> = Vec::new();
        for url in urls {
            match connect_to(url.clone(), tls.clone(), REPLICA_CONNECT_TIMEOUT).await {
                Ok(channel) => {
                    for (dead, why) in &failed {
                        self.out.stderr_line(&format_args!(
                            "warning: control plane {dead} did not answer ({why}); using {url}"
                        ));
                    }
                    return Ok(channel);
                }
                Err(e @ ClientError::Url { .. }) => return Err(e),
                Err(e) => failed.push((url, reason(&e))),
            }
        }
        Err(ClientError::NoneAnswered(failed))
    }

    /// A channel to every control plane the flags name that accepts a connection (tried at
    /// once), in the flags' order, and why each other one did not; an error only when none
    /// answered (or the identity or a URL is wrong).
    pub async fn connect_all(&self) -> Result<Replicas, ClientError> {
        let urls = self.urls()?;
        if let [url] = &urls[..] {
            return Ok(Replicas {
                up: vec![(url.clone(), self.connect().await?)],
                down: vec![],
            });
        }
        let tls = self.tls()?;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, url) in urls.iter().enumerate() {
            let (url, tls) = (url.clone(), tls.clone());
            tasks.spawn(async move { (i, connect_to(url, tls, REPLICA_CONNECT_TIMEOUT).await) });
        }
        let mut results: Vec<Option<Result<Channel, ClientError>>> =
            urls.iter().map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            let (i, r) = done.expect("a connect task does not panic");
            results[i] = Some(r);
        }
        let mut replicas = Replicas::default();
        for (url, r) in urls.into_iter().zip(results) {
            match r.expect("every connect finished") {
                Ok(channel) => replicas.up.push((url, channel)),
                Err(e @ ClientError::Url { .. }) => return Err(e),
                Err(e) => replicas.down.push((url, reason(&e))),
            }
        }
        if replicas.up.is_empty() {
            return Err(ClientError::NoneAnswered(replicas.down));
        }
        Ok(replicas)
    }

    /// The `Policies` service, taking answers as large as the control plane takes requests
    /// (a `get` of a source at the size limit).
    pub async fn policies(&self) -> Result<PoliciesClient<Channel>, ClientError> {
        Ok(policies_on(self.connect().await?))
    }

    pub async fn nodes(&self) -> Result<NodesClient<Channel>, ClientError> {
        Ok(NodesClient::new(self.connect().await?))
    }

    pub async fn audit(&self) -> Result<AuditClient<Channel>, ClientError> {
        Ok(AuditClient::new(self.connect().await?))
    }

    /// The current revision of every policy, with its IR (`list`, `diff`, `export`).
    pub async fn current_policies(&self) -> Result<Vec<v1::PolicyRevision>, ClientError> {
        let mut c = self.policies().await?;
        Ok(answer(c.list(v1::ListRequest {}).await)?.policies)
    }
}
