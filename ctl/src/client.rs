//! The connection to the control plane (mutual TLS with the certificate the global flags
//! name) and the requests more than one command makes. A refused call becomes a
//! [`ClientError`] that says why in words.

use crate::args::Connection;
use palisade_pki::{PkiDir, PkiError, Role};
use palisade_proto::v1::{
    self, audit_client::AuditClient, nodes_client::NodesClient, policies_client::PoliciesClient,
};
use tonic::transport::{Channel, Endpoint};

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
    /// A refused TLS handshake only shows up as a transport error on the first request.
    #[error(
        "the control plane closed the connection ({causes}); is this certificate expired, revoked or from another CA? (the control plane logs why)"
    )]
    Closed { causes: String },
    #[error("control plane refused: {} ({:?})", .0.message(), .0.code())]
    Refused(tonic::Status),
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
}

/// The `Policies` service on `channel`, decoding messages up to
/// [`palisade_proto::MAX_POLICY_MESSAGE`].
pub fn policies_on(channel: Channel) -> PoliciesClient<Channel> {
    PoliciesClient::new(channel).max_decoding_message_size(palisade_proto::MAX_POLICY_MESSAGE)
}

impl<'a> Client<'a> {
    pub fn new(to: &'a Connection) -> Client<'a> {
        Client { to }
    }

    /// A channel over mutual TLS with the chosen identity's certificate.
    pub async fn connect(&self) -> Result<Channel, ClientError> {
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
        let tls = pki.client_tls(&paths, &to.tls_server_name)?;
        let url = || to.controlplane.clone();
        Endpoint::from_shared(to.controlplane.clone())
            .map_err(|source| ClientError::Url { url: url(), source })?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tls_config(tls)
            .map_err(ClientError::Tls)?
            .connect()
            .await
            .map_err(|source| ClientError::Connect { url: url(), source })
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
