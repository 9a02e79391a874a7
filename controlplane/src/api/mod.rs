//! The gRPC services, a thin layer over the shared state (`crate::state`) and the rollout
//! driver, with the role check (`crate::auth::require`) first in every call.
//!
//! - [`policies`]: validate, apply, list, get, history, rollback, delete.
//! - [`nodes`]: node sessions (desired state out; status and audit batches in), the node
//!   list and labels.
//! - [`audit`]: `audit tail`, recent events then new ones.
//! - [`rollouts`]: rollout status and list; pause, resume and abort.
//!
//! Errors of the layers below become a `Status` here, and only here (`auth::require`
//! answers a refused role with its own `Status`).

pub mod audit;
pub mod nodes;
pub mod policies;
pub mod rollouts;

pub use audit::AuditApi;
pub use nodes::NodesApi;
pub use policies::PoliciesApi;
pub use rollouts::RolloutsApi;

use crate::rollout::driver::DriverError;
use crate::store::StoreError;
use tonic::Status;

/// A store error as the caller sees it: missing things are NOT_FOUND, refused changes
/// FAILED_PRECONDITION, a store that does not answer (etcd down) UNAVAILABLE, anything
/// else INTERNAL (and logged).
fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NoSuchPolicy(_) | StoreError::NoSuchRevision { .. } => {
            Status::not_found(e.to_string())
        }
        StoreError::AlreadyDeleted { .. } | StoreError::NotCurrent { .. } => {
            Status::failed_precondition(e.to_string())
        }
        StoreError::Unavailable { .. } | StoreError::NotDriver => {
            tracing::warn!(error = %e, "store unavailable");
            Status::unavailable(e.to_string())
        }
        e => {
            tracing::error!(error = %e, "store failure");
            Status::internal(e.to_string())
        }
    }
}

/// A driver error: a rollout in the way is FAILED_PRECONDITION.
fn driver_status(e: DriverError) -> Status {
    match e {
        DriverError::Store(e) => store_status(e),
        e @ DriverError::Rollout(_) => Status::failed_precondition(e.to_string()),
        DriverError::NoRollout { policy } => Status::not_found(format!(
            "policy {policy:?} has no rollout (`palisadectl rollout list` shows every policy's latest)"
        )),
    }
}

/// A blocking task that did not finish (it panicked or was cancelled).
fn task_status(e: tokio::task::JoinError) -> Status {
    Status::internal(e.to_string())
}
