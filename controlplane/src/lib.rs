//! Palisade's control plane as a library; `main.rs` is glue.
//!
//! From the bottom up (each layer uses only those below it):
//!
//! - [`store`]: every policy revision, durably (sled or etcd behind the
//!   [`store::PolicyStore`] trait); `store::cluster`: what replicas sharing a store (etcd)
//!   need from it: registry, driver election with a fence, node presence, the change feed.
//! - [`auditlog`]: the persisted, bounded audit log (sled behind [`auditlog::AuditLog`]).
//! - [`audit`]: audit ingest (sequence numbers, dedup, loss events) and fan-out with filters.
//! - [`export`]: the audit export: every event as a JSON line in a directory SIEM shippers
//!   tail (`--audit-export-dir`), rotated by size and age.
//! - [`auth`]: identities and roles from client certificates.
//! - [`desired`]: which revision each node must enforce, one snapshot per change.
//! - [`rollout`]: rollouts: the spec, one rollout as a pure state machine, its wire view,
//!   every policy's latest rollout (persisted); and its driver (above [`state`]).
//! - [`fleet`]: connected nodes, their labels (with operators' overrides) and what each enforces.
//! - [`latency`]: apply latency over the most recent applies.
//! - [`state`]: [`ControlPlane`]: the parts listed so far, the epoch node sessions watch
//!   and the snapshot of the current epoch; shared by everything after it.
//! - [`replica`]: joining the other replicas on a shared store: following its changes
//!   into the in-memory view, publishing the nodes served here.
//! - [`api`]: the gRPC services (policies, nodes, audit, rollouts); `rollout::driver`
//!   steps rollouts; [`metrics`]: Prometheus text for `--metrics ADDR`.
//! - [`tls`]: mutual-TLS accept loop; certificates and revocations reload without a restart.
//!
//! [`serve`] runs everything on a listener until `shutdown` resolves, so tests can bind
//! `127.0.0.1:0` and call it directly.

pub mod api;
pub mod audit;
pub mod auditlog;
pub mod auth;
pub mod blocking;
pub mod desired;
pub mod export;
pub mod fleet;
pub mod latency;
pub mod metrics;
pub mod replica;
pub mod rollout;
pub mod state;
pub mod store;
pub mod tls;

pub use state::ControlPlane;

use api::{AuditApi, NodesApi, PoliciesApi, RolloutsApi};
use palisade_pki::PkiDir;
use palisade_proto::v1::{
    audit_server::AuditServer, nodes_server::NodesServer, policies_server::PoliciesServer,
    rollouts_server::RolloutsServer,
};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Pki(#[from] palisade_pki::PkiError),
    #[error("joining the other replicas: {0}")]
    Store(#[from] store::StoreError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the control plane's gRPC API over mutual TLS on `listener`, and steps rollouts,
/// until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pki: &PkiDir,
    cp: Arc<ControlPlane>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let tls = Arc::new(palisade_pki::server_tls::ReloadingServerTls::new(
        pki.clone(),
    )?);
    if cp.me().is_none() {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        replica::join(&cp, replica::default_me(&format!("https://{addr}"), &addr))
            .map_err(ServeError::Store)?;
    }
    let incoming = tls::incoming(listener, tls);
    let driver = tokio::spawn(rollout::driver::drive(cp.clone()));
    let served = tonic::transport::Server::builder()
        .initial_stream_window_size(palisade_proto::STREAM_WINDOW)
        .initial_connection_window_size(palisade_proto::CONNECTION_WINDOW)
        .add_service(
            PoliciesServer::new(PoliciesApi(cp.clone()))
                .max_decoding_message_size(palisade_proto::MAX_POLICY_MESSAGE),
        )
        .add_service(NodesServer::new(NodesApi(cp.clone())))
        .add_service(RolloutsServer::new(RolloutsApi(cp.clone())))
        .add_service(AuditServer::new(AuditApi(cp)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    driver.abort();
    served?;
    Ok(())
}
