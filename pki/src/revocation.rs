//! Revocation: `revoked.txt` in the PKI directory lists the serial numbers the control
//! plane refuses, one per line (`SERIAL  role:name  unix-time`; `#` starts a comment).
//! The server re-reads it when it changes (see [`crate::server_tls`]).

use crate::{PkiDir, PkiError, Role, read_string, write};
use std::collections::HashSet;
use std::path::PathBuf;

/// A certificate's serial number as lowercase hex without separators.
pub fn serial_of_der(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::BadPeerCert(e.to_string()))?;
    Ok(cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The serial number of the first certificate in a PEM file.
pub fn serial_of_pem_file(path: &std::path::Path) -> Result<String, PkiError> {
    let pem = read_string(path)?;
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| PkiError::Invalid {
            path: path.to_path_buf(),
            what: format!("not a PEM certificate: {e}"),
        })?;
    serial_of_der(&p.contents)
}

impl PkiDir {
    pub fn revoked_path(&self) -> PathBuf {
        self.root.join("revoked.txt")
    }

    /// The revoked serial numbers; none when the file does not exist.
    pub fn revoked(&self) -> Result<HashSet<String>, PkiError> {
        let path = self.revoked_path();
        if !path.exists() {
            return Ok(HashSet::new());
        }
        let text = read_string(&path)?;
        let mut out = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some(serial) = line.split_whitespace().next() else {
                continue;
            };
            if !serial.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(PkiError::Invalid {
                    path: path.clone(),
                    what: format!("line {}: {serial:?} is not a hex serial number", i + 1),
                });
            }
            out.insert(serial.to_ascii_lowercase());
        }
        Ok(out)
    }

    /// Revokes the current certificate of `role`/`name`; returns its serial number.
    pub fn revoke(&self, role: Role, name: &str) -> Result<String, PkiError> {
        let serial = serial_of_pem_file(&self.cert_paths(role, name).cert)?;
        let path = self.revoked_path();
        let mut text = if path.exists() {
            read_string(&path)?
        } else {
            "# serial  identity  revoked-at (unix seconds)\n".to_string()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        text.push_str(&format!("{serial}  {role}:{name}  {now}\n"));
        write(&path, text.as_bytes(), false)?;
        Ok(serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_lists_the_serial() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        pki.init(&["n1".into()], false).unwrap();
        assert!(pki.revoked().unwrap().is_empty());
        let s = pki.revoke(Role::Node, "n1").unwrap();
        assert!(pki.revoked().unwrap().contains(&s));
        let op = serial_of_pem_file(&pki.cert_paths(Role::Operator, "operator").cert).unwrap();
        assert_ne!(s, op);
        std::fs::write(pki.revoked_path(), "zz-not-hex\n").unwrap();
        let err = pki.revoked().unwrap_err().to_string();
        assert!(err.contains("revoked.txt: line 1"), "{err}");
    }
}
