//! `palisadectl pki rotate DIR [--ca]` and `pki revoke DIR --role R --name N`: renew every
//! certificate (optionally under a new CA, keeping the previous CA trusted in the bundle),
//! or revoke one. A running control plane picks both up on its next connection.

use anyhow::Result;
use palisade_pki::{PkiDir, Role, Validity};
use std::path::Path;
use std::process::ExitCode;

pub fn rotate(dir: &Path, new_ca: bool, days: i64) -> Result<ExitCode> {
    let written = PkiDir::new(dir).rotate(new_ca, Validity::days(days))?;
    for p in &written {
        println!("wrote {}", p.display());
    }
    if new_ca {
        println!(
            "ca.pem now holds the new CA and the previous one; rotate again once every node has its new certificate to retire the old CA"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(dir: &Path, role: &str, name: &str) -> Result<ExitCode> {
    let role: Role = role.parse()?;
    let pki = PkiDir::new(dir);
    let serial = pki.revoke(role, name)?;
    println!(
        "revoked {role}:{name} (serial {serial}) in {}",
        pki.revoked_path().display()
    );
    Ok(ExitCode::SUCCESS)
}
