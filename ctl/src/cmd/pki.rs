//! `palisadectl pki init|issue|rotate|revoke DIR`: create a dev PKI, issue one more
//! certificate, renew every certificate (optionally under a new CA, keeping the previous
//! CA trusted in the bundle), or revoke one. A running control plane picks up rotations
//! and revocations on its next connection.

use crate::args::PkiCmd;
use crate::print::Printer;
use anyhow::Result;
use palisade_pki::{PkiDir, Role, Validity};
use std::process::ExitCode;

pub fn run(out: Printer, cmd: &PkiCmd) -> Result<ExitCode> {
    match cmd {
        PkiCmd::Init { dir, nodes, force } => {
            let written = PkiDir::new(dir).init(nodes, *force)?;
            out.message(&format!(
                "wrote a dev PKI to {} ({} files); keep ca.key off nodes",
                dir.display(),
                written.len() + 1
            ));
        }
        PkiCmd::Issue {
            dir,
            role,
            name,
            days,
        } => {
            let role: Role = role.parse()?;
            for p in PkiDir::new(dir).issue_valid(role, name, Validity::days(*days))? {
                out.message(&format!("wrote {}", p.display()));
            }
        }
        PkiCmd::Rotate { dir, ca, days } => {
            for p in PkiDir::new(dir).rotate(*ca, Validity::days(*days))? {
                out.message(&format!("wrote {}", p.display()));
            }
            if *ca {
                out.message(&"ca.pem now holds the new CA and the previous one; rotate again once every node has its new certificate to retire the old CA");
            }
        }
        PkiCmd::Revoke { dir, role, name } => {
            let role: Role = role.parse()?;
            let pki = PkiDir::new(dir);
            let serial = pki.revoke(role, name)?;
            out.message(&format!(
                "revoked {role}:{name} (serial {serial}) in {}",
                pki.revoked_path().display()
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
