//! The control plane's TLS configuration, rebuilt whenever the files it comes from change
//! (`ca.pem`, `controlplane.pem`, `controlplane.key`, `revoked.txt`), so renewed
//! certificates, a new CA bundle or a revocation apply to new connections without a restart.
//!
//! Client certificates must chain to a CA in `ca.pem`, be within their validity period
//! (rustls' webpki verifier checks both) and not be listed in `revoked.txt`.

use crate::{PkiDir, PkiError, Role, read_string, revocation::serial_of_der};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// (modified, length, inode) of each watched file; None when missing.
type Stamps = Vec<Option<(std::time::SystemTime, u64, u64)>>;

pub struct ReloadingServerTls {
    pki: PkiDir,
    state: Mutex<(Stamps, Arc<ServerConfig>)>,
}

impl ReloadingServerTls {
    /// Builds the first configuration; fails when the files are missing or unusable.
    pub fn new(pki: PkiDir) -> Result<Self, PkiError> {
        let stamps = stamps(&pki);
        let config = Arc::new(build(&pki)?);
        Ok(ReloadingServerTls {
            pki,
            state: Mutex::new((stamps, config)),
        })
    }

    /// The configuration for a new connection: rebuilt first if a file changed. A change
    /// that does not build (say, a certificate written before its key) keeps the previous
    /// configuration and is tried again on the next connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut state = self.state.lock().expect("tls lock");
        let now = stamps(&self.pki);
        if now != state.0 {
            match build(&self.pki) {
                Ok(c) => {
                    tracing::info!(pki = %self.pki.root.display(), "TLS files changed: certificates, CA bundle and revocations reloaded");
                    *state = (now, Arc::new(c));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous configuration")
                }
            }
        }
        state.1.clone()
    }
}

fn watched(pki: &PkiDir) -> Vec<PathBuf> {
    let own = pki.cert_paths(Role::ControlPlane, "controlplane");
    vec![pki.ca_cert(), own.cert, own.key, pki.revoked_path()]
}

fn stamps(pki: &PkiDir) -> Stamps {
    use std::os::unix::fs::MetadataExt;
    watched(pki)
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

fn pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let text = read_string(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Invalid {
            path: path.to_path_buf(),
            what: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Invalid {
            path: path.to_path_buf(),
            what: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// Builds the server configuration from the files as they are now.
pub fn build(pki: &PkiDir) -> Result<ServerConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in pem_certs(&pki.ca_cert())? {
        roots.add(c)?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| PkiError::Verifier(e.to_string()))?;
    let verifier = Arc::new(RevocationChecking {
        inner,
        revoked: pki.revoked()?,
    });
    let own = pki.cert_paths(Role::ControlPlane, "controlplane");
    let chain = pem_certs(&own.cert)?;
    let key_text = read_string(&own.key)?;
    let key = rustls_pemfile::private_key(&mut key_text.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| PkiError::Invalid {
            path: own.key.clone(),
            what: "no private key in it".into(),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The webpki verifier (chain and validity period), then the revocation list. Every refusal
/// is logged with the identity the certificate claims.
#[derive(Debug)]
struct RevocationChecking {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: HashSet<String>,
}

impl ClientCertVerifier for RevocationChecking {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let claimed = crate::Identity::from_der(end_entity)
            .map(|i| i.to_string())
            .unwrap_or_else(|_| "an unnamed certificate".into());
        let outcome = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .and_then(|ok| {
                let serial = serial_of_der(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
                })?;
                if self.revoked.contains(&serial) {
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::Revoked,
                    ))
                } else {
                    Ok(ok)
                }
            });
        if let Err(e) = &outcome {
            tracing::warn!(claimed = %claimed, error = %e, "refused a client certificate");
        }
        outcome
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
