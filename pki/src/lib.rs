//! Palisade's PKI: a dev CA, certificates that carry a role, the mutual-TLS configurations
//! every binary uses, and the identity a peer's certificate proves.
//!
//! A certificate's subject names the holder (`CN`) and its role (`OU`): `controlplane`,
//! `operator`, `viewer` or `node`. The control plane trusts the role in a certificate the
//! CA signed and nothing a request says about itself.
//!
//! Layout of a PKI directory:
//!
//! ```text
//! ca.pem ca.key                      the CA (keep ca.key off nodes)
//! controlplane.pem controlplane.key  server identity; SAN "palisade-controlplane", "localhost"
//! operator.pem operator.key          may apply policies
//! viewer.pem viewer.key              may read and tail audit
//! nodes/NAME.pem nodes/NAME.key      one per node; may only register as NAME
//! revoked.txt                        serial numbers (hex) the control plane refuses
//! ```
//!
//! `ca.pem` is a bundle: after `rotate --ca` it holds the new CA first and the previous one
//! after it, so certificates of either are accepted until every holder has new ones.
//! [`server_tls`] rebuilds the server's TLS configuration whenever any of these files
//! change, so a renewed certificate, CA bundle or revocation takes effect without a restart.

pub mod revocation;
pub mod server_tls;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The DNS name in the control plane's certificate that clients verify by default.
pub const SERVER_NAME: &str = "palisade-controlplane";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} already exists; pass --force to overwrite the PKI")]
    Exists { path: PathBuf },
    #[error("unknown role {0:?} (expected controlplane, operator, viewer or node)")]
    UnknownRole(String),
    #[error("invalid name {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidName(String),
    #[error("peer certificate cannot be parsed: {0}")]
    BadPeerCert(String),
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// How long issued certificates are valid, counted from now (negative: in the past).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub from_days: i64,
    pub to_days: i64,
}

impl Validity {
    /// One year from a minute ago (leaf certificates).
    pub const LEAF: Validity = Validity {
        from_days: 0,
        to_days: 365,
    };
    /// Ten years (the CA).
    pub const CA: Validity = Validity {
        from_days: 0,
        to_days: 3650,
    };

    pub fn days(days: i64) -> Validity {
        Validity {
            from_days: 0,
            to_days: days,
        }
    }

    fn set(&self, params: &mut CertificateParams) {
        let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        params.not_before = now + time::Duration::days(self.from_days);
        params.not_after = now + time::Duration::days(self.to_days);
    }
}

/// What a certificate allows its holder to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ControlPlane,
    Operator,
    Viewer,
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "controlplane",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Node => "node",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, PkiError> {
        match s {
            "controlplane" => Ok(Role::ControlPlane),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "node" => Ok(Role::Node),
            _ => Err(PkiError::UnknownRole(s.to_string())),
        }
    }
}

/// Who is on the other end of a connection, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.role, self.name)
    }
}

impl Identity {
    /// Reads name (CN) and role (OU) from a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PkiError::BadPeerCert(e.to_string()))?;
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or_else(|| PkiError::BadPeerCert("no common name".into()))?;
        let ou = subject
            .iter_organizational_unit()
            .next()
            .and_then(|a| a.as_str().ok())
            .ok_or_else(|| PkiError::BadPeerCert("no organizational unit (role)".into()))?;
        Ok(Identity {
            name: cn.to_string(),
            role: ou.parse()?,
        })
    }
}

/// Paths inside a PKI directory.
#[derive(Debug, Clone)]
pub struct PkiDir {
    pub root: PathBuf,
}

/// A certificate and its key, as PEM file paths.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PkiDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PkiDir { root: root.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// Where the certificate of `role`/`name` lives.
    pub fn cert_paths(&self, role: Role, name: &str) -> CertPaths {
        let base = match role {
            Role::Node => self.root.join("nodes").join(name),
            Role::ControlPlane => self.root.join("controlplane"),
            Role::Operator => self.root.join("operator"),
            Role::Viewer => self.root.join("viewer"),
        };
        CertPaths {
            cert: base.with_extension("pem"),
            key: base.with_extension("key"),
        }
    }

    /// Creates a CA and the control plane, operator, viewer and node certificates.
    pub fn init(&self, nodes: &[String], force: bool) -> Result<Vec<PathBuf>, PkiError> {
        if self.ca_cert().exists() && !force {
            return Err(PkiError::Exists {
                path: self.ca_cert(),
            });
        }
        let (params, ca_key, ca_cert) = new_ca()?;
        let mut written = Vec::new();
        write(&self.ca_cert(), ca_cert.pem().as_bytes(), false)?;
        write(&self.ca_key(), ca_key.serialize_pem().as_bytes(), true)?;
        written.push(self.ca_cert());

        let issuer = Issuer::new(params, ca_key);
        let v = Validity::LEAF;
        written.extend(self.issue_with(&issuer, Role::ControlPlane, "controlplane", v)?);
        written.extend(self.issue_with(&issuer, Role::Operator, "operator", v)?);
        written.extend(self.issue_with(&issuer, Role::Viewer, "viewer", v)?);
        for n in nodes {
            written.extend(self.issue_with(&issuer, Role::Node, n, v)?);
        }
        Ok(written)
    }

    /// Every leaf certificate in this directory: (role, name).
    pub fn leaves(&self) -> Vec<(Role, String)> {
        let mut out = Vec::new();
        for (role, name) in [
            (Role::ControlPlane, "controlplane"),
            (Role::Operator, "operator"),
            (Role::Viewer, "viewer"),
        ] {
            if self.cert_paths(role, name).cert.exists() {
                out.push((role, name.to_string()));
            }
        }
        if let Ok(dir) = std::fs::read_dir(self.root.join("nodes")) {
            let mut nodes: Vec<String> = dir
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension()? == "pem").then(|| p.file_stem()?.to_str().map(String::from))?
                })
                .collect();
            nodes.sort();
            out.extend(nodes.into_iter().map(|n| (Role::Node, n)));
        }
        out
    }

    /// Issues every leaf certificate again with a new key. With `new_ca`, first makes a new
    /// CA: `ca.pem` becomes the new CA followed by the previous one (both trusted), `ca.key`
    /// the new key, and every leaf is signed by the new CA.
    pub fn rotate(&self, with_new_ca: bool, validity: Validity) -> Result<Vec<PathBuf>, PkiError> {
        let mut written = Vec::new();
        let issuer = if with_new_ca {
            let old = read_string(&self.ca_cert())?;
            let previous = old
                .split_inclusive("-----END CERTIFICATE-----")
                .next()
                .unwrap_or_default()
                .trim();
            let (params, key, cert) = new_ca()?;
            let bundle = format!("{}\n{previous}\n", cert.pem().trim());
            write(&self.ca_key(), key.serialize_pem().as_bytes(), true)?;
            write(&self.ca_cert(), bundle.as_bytes(), false)?;
            written.push(self.ca_cert());
            Issuer::new(params, key)
        } else {
            self.issuer()?
        };
        for (role, name) in self.leaves() {
            written.extend(self.issue_with(&issuer, role, &name, validity)?);
        }
        Ok(written)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let ca_pem = read_string(&self.ca_cert())?;
        let key_pem = read_string(&self.ca_key())?;
        let key = KeyPair::from_pem(&key_pem)?;
        Ok(Issuer::from_ca_cert_pem(&ca_pem, key)?)
    }

    /// Issues one more certificate from the CA in this directory.
    pub fn issue(&self, role: Role, name: &str) -> Result<Vec<PathBuf>, PkiError> {
        self.issue_valid(role, name, Validity::LEAF)
    }

    /// Issues one more certificate valid for `validity`.
    pub fn issue_valid(
        &self,
        role: Role,
        name: &str,
        validity: Validity,
    ) -> Result<Vec<PathBuf>, PkiError> {
        self.issue_with(&self.issuer()?, role, name, validity)
    }

    fn issue_with(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        role: Role,
        name: &str,
        validity: Validity,
    ) -> Result<Vec<PathBuf>, PkiError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(PkiError::InvalidName(name.to_string()));
        }
        let sans = match role {
            Role::ControlPlane => vec![SERVER_NAME.to_string(), "localhost".to_string()],
            _ => vec![],
        };
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Palisade");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity.set(&mut params);
        params.extended_key_usages = match role {
            Role::ControlPlane => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, issuer)?;
        let paths = self.cert_paths(role, name);
        write(&paths.cert, cert.pem().as_bytes(), false)?;
        write(&paths.key, key.serialize_pem().as_bytes(), true)?;
        Ok(vec![paths.cert, paths.key])
    }

    /// The server side of mutual TLS: our identity, and only clients the CA signed.
    pub fn server_tls(&self) -> Result<tonic::transport::ServerTlsConfig, PkiError> {
        let own = self.cert_paths(Role::ControlPlane, "controlplane");
        Ok(tonic::transport::ServerTlsConfig::new()
            .identity(load_identity(&own)?)
            .client_ca_root(tonic::transport::Certificate::from_pem(read_string(
                &self.ca_cert(),
            )?)))
    }

    /// The client side of mutual TLS with the identity at `own`.
    pub fn client_tls(
        &self,
        own: &CertPaths,
        server_name: &str,
    ) -> Result<tonic::transport::ClientTlsConfig, PkiError> {
        Ok(tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read_string(
                &self.ca_cert(),
            )?))
            .identity(load_identity(own)?)
            .domain_name(server_name))
    }
}

/// A new CA: its parameters (for an [`Issuer`]), key and self-signed certificate.
fn new_ca() -> Result<(CertificateParams, KeyPair, rcgen::Certificate), PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Palisade dev CA {stamp}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Palisade");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Validity::CA.set(&mut params);
    let ca_cert = params.self_signed(&ca_key)?;
    Ok((params, ca_key, ca_cert))
}

fn load_identity(p: &CertPaths) -> Result<tonic::transport::Identity, PkiError> {
    Ok(tonic::transport::Identity::from_pem(
        read_string(&p.cert)?,
        read_string(&p.key)?,
    ))
}

pub(crate) fn read_string(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write(path: &Path, data: &[u8], secret: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    // Write aside and rename, so a crash never leaves half a key.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    keep_owner_and_mode(&f, path).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A file written over an existing one keeps that file's owner, group and mode, so that
/// a key someone made readable to a daemon's group (the packaged control plane runs as
/// user `palisade`) stays readable after `pki rotate`.
fn keep_owner_and_mode(new: &std::fs::File, old: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(was) = std::fs::metadata(old) else {
        return Ok(());
    };
    let now = new.metadata()?;
    if (was.uid(), was.gid()) != (now.uid(), now.gid()) {
        std::os::unix::fs::fchown(new, Some(was.uid()), Some(was.gid()))?;
    }
    new.set_permissions(std::fs::Permissions::from_mode(was.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriting_a_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        write(&p, b"one", true).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&p, b"two", true).unwrap();
        assert_eq!(mode(&p), 0o640, "the mode given to the old file is kept");
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
    }

    fn pem_to_der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }

    #[test]
    fn init_writes_role_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        pki.init(&["node-a".into()], false).unwrap();
        let node = pki.cert_paths(Role::Node, "node-a");
        let id =
            Identity::from_der(&pem_to_der(&std::fs::read_to_string(&node.cert).unwrap())).unwrap();
        assert_eq!(
            id,
            Identity {
                name: "node-a".into(),
                role: Role::Node
            }
        );
        let op = pki.cert_paths(Role::Operator, "operator");
        let id =
            Identity::from_der(&pem_to_der(&std::fs::read_to_string(&op.cert).unwrap())).unwrap();
        assert_eq!(id.role, Role::Operator);
        assert!(matches!(pki.init(&[], false), Err(PkiError::Exists { .. })));
        // A later certificate from the same CA.
        pki.issue(Role::Node, "node-b").unwrap();
        assert!(pki.cert_paths(Role::Node, "node-b").key.exists());
        assert!(matches!(
            pki.issue(Role::Node, "../x"),
            Err(PkiError::InvalidName(_))
        ));
    }
}
