//! Palisade's control plane as a library; `main.rs` is glue.
//!
//! - [`store`]: every policy revision, durably (sled behind the [`store::PolicyStore`] trait).
//! - [`service`]: the gRPC services (policies, node sessions, audit tail).
//! - [`auth`]: identities and roles from client certificates.
//! - [`fleet`]: connected nodes, their labels (with operators' overrides) and what each enforces.
//! - [`desired`]: which revision each node must enforce, one snapshot per change.
//! - [`rollout`]: one rollout as a pure state machine (waves, gates, rollback).
//! - [`rollouts`]: every policy's latest rollout, persisted, and the task that steps them.
//! - [`rollout_api`]: the `Rollouts` gRPC service.
//! - [`audit`]: audit ingest (sequence numbers, dedup, loss events) and fan-out with filters.
//! - [`auditlog`]: the persisted, bounded audit log (sled behind [`auditlog::AuditLog`]).
//! - [`metrics`]: Prometheus text for `--metrics ADDR`.
//! - [`tls`]: mutual-TLS accept loop; certificates and revocations reload without a restart.
//!
//! [`serve`] runs everything on a listener until `shutdown` resolves, so tests can bind
//! `127.0.0.1:0` and call it directly.

pub mod audit;
pub mod auditlog;
pub mod auth;
pub mod desired;
pub mod fleet;
pub mod metrics;
pub mod rollout;
pub mod rollout_api;
pub mod rollouts;
pub mod service;
pub mod store;
pub mod tls;

use palisade_pki::PkiDir;
use palisade_proto::v1::{
    audit_server::AuditServer, nodes_server::NodesServer, policies_server::PoliciesServer,
    rollouts_server::RolloutsServer,
};
use service::{AuditApi, ControlPlane, NodesApi, PoliciesApi};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Pki(#[from] palisade_pki::PkiError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the control plane's gRPC API over mutual TLS on `listener`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pki: &PkiDir,
    cp: Arc<ControlPlane>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let tls = std::sync::Arc::new(palisade_pki::server_tls::ReloadingServerTls::new(
        pki.clone(),
    )?);
    let incoming = tls::incoming(listener, tls);
    let driver = tokio::spawn(rollouts::drive(cp.clone()));
    let served = tonic::transport::Server::builder()
        .add_service(PoliciesServer::new(PoliciesApi(cp.clone())))
        .add_service(NodesServer::new(NodesApi(cp.clone())))
        .add_service(RolloutsServer::new(rollout_api::RolloutsApi(cp.clone())))
        .add_service(AuditServer::new(AuditApi(cp)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    driver.abort();
    served?;
    Ok(())
}
