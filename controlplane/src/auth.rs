//! Who is calling: the identity proven by the client certificate of the mutual-TLS
//! connection, and the checks each RPC makes on its role.

use palisade_pki::{Identity, Role};
use std::sync::atomic::{AtomicU64, Ordering};
use tonic::{Request, Status};

/// Requests refused for their caller's role (for metrics).
pub static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The caller's identity, from its certificate. The TLS layer has already checked that the
/// CA signed it; this reads name and role.
pub fn identity<T>(req: &Request<T>) -> Result<Identity, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let first = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    Identity::from_der(first.as_ref())
        .map_err(|e| Status::unauthenticated(format!("unusable client certificate: {e}")))
}

/// The caller's identity if its role is one of `allowed`.
pub fn require<T>(req: &Request<T>, what: &str, allowed: &[Role]) -> Result<Identity, Status> {
    let id = identity(req)?;
    if allowed.contains(&id.role) {
        Ok(id)
    } else {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(caller = %id, what, "refused: role not allowed");
        Err(Status::permission_denied(format!(
            "{id} may not {what} (needs role {})",
            allowed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}
