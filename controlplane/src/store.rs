//! The policy store: every applied policy is an immutable revision.
//!
//! [`PolicyStore`] is the small trait the rest of the control plane uses; [`SledStore`]
//! implements it on sled (0.34), whose on-disk format is old and may change, so nothing
//! outside this module knows it is sled.
//!
//! Sled layout (keys are bytes):
//!
//! ```text
//! tree "revisions": u64 revision (big-endian)  -> Revision as JSON   (immutable)
//! tree "current":   policy name (UTF-8)        -> u64 revision (big-endian)
//! tree "meta":      "last_revision"            -> u64 (big-endian)
//! ```
//!
//! An apply writes all three in one transaction and flushes before it returns, so a crash
//! at any point leaves either the old revision current or the new one, never half of it.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("policy store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("policy store: {0}")]
    Sled(#[from] sled::Error),
    #[error("policy store holds a corrupt record under {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

/// One stored revision of one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub name: String,
    pub revision: u64,
    pub content_hash: String,
    pub file: String,
    pub source: String,
    pub ir_json: String,
    pub author: String,
    pub created_unix_ms: i64,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub revision: u64,
    /// False when the content equals the current revision's: nothing was written.
    pub changed: bool,
}

/// A new revision to store; the store assigns the number.
#[derive(Debug, Clone)]
pub struct NewRevision<'a> {
    pub name: &'a str,
    pub content_hash: &'a str,
    pub file: &'a str,
    pub source: &'a str,
    pub ir_json: &'a str,
    pub author: &'a str,
}

pub trait PolicyStore: Send + Sync + 'static {
    /// Stores `new` as the current revision of its policy, atomically and durably.
    fn apply(&self, new: NewRevision<'_>) -> Result<Applied, StoreError>;
    /// The current revision of every policy, by name.
    fn current(&self) -> Result<Vec<Revision>, StoreError>;
}

pub struct SledStore {
    db: sled::Db,
    revisions: sled::Tree,
    current: sled::Tree,
    meta: sled::Tree,
}

const LAST_REVISION: &[u8] = b"last_revision";

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn from_be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::open(dir.join("policies.sled")).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(SledStore {
            revisions: db.open_tree("revisions")?,
            current: db.open_tree("current")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Revision, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            key: key.to_string(),
            source,
        })
    }
}

impl PolicyStore for SledStore {
    fn apply(&self, new: NewRevision<'_>) -> Result<Applied, StoreError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let outcome =
            (&self.revisions, &self.current, &self.meta).transaction(|(revs, cur, meta)| {
                if let Some(rev) = cur.get(new.name.as_bytes())?
                    && let Some(bytes) = revs.get(rev.as_ref())?
                    && let Ok(old) = serde_json::from_slice::<Revision>(&bytes)
                    && old.content_hash == new.content_hash
                {
                    return Ok(Applied {
                        revision: old.revision,
                        changed: false,
                    });
                }
                let last = meta.get(LAST_REVISION)?.map(|b| from_be(&b)).unwrap_or(0);
                let revision = last + 1;
                let record = Revision {
                    name: new.name.to_string(),
                    revision,
                    content_hash: new.content_hash.to_string(),
                    file: new.file.to_string(),
                    source: new.source.to_string(),
                    ir_json: new.ir_json.to_string(),
                    author: new.author.to_string(),
                    created_unix_ms: now_ms,
                };
                let json = serde_json::to_vec(&record).expect("revision serialises");
                revs.insert(&be(revision), json)?;
                cur.insert(new.name.as_bytes(), &be(revision))?;
                meta.insert(LAST_REVISION, &be(revision))?;
                Ok(Applied {
                    revision,
                    changed: true,
                })
            });
        let applied = outcome.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(()) => {
                unreachable!("apply never aborts")
            }
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        })?;
        if applied.changed {
            self.db.flush()?;
        }
        Ok(applied)
    }

    fn current(&self) -> Result<Vec<Revision>, StoreError> {
        let mut out = Vec::new();
        for item in self.current.iter() {
            let (name, rev) = item?;
            let name = String::from_utf8_lossy(&name).to_string();
            if let Some(bytes) = self.revisions.get(rev)? {
                out.push(Self::decode(&name, &bytes)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(name: &'a str, hash: &'a str) -> NewRevision<'a> {
        NewRevision {
            name,
            content_hash: hash,
            file: "f.rhai",
            source: "src",
            ir_json: "{}",
            author: "operator:test",
        }
    }

    #[test]
    fn revisions_increase_and_identical_content_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.apply(new("a", "h1")).unwrap(),
            Applied {
                revision: 1,
                changed: true
            }
        );
        assert_eq!(
            store.apply(new("b", "h1")).unwrap(),
            Applied {
                revision: 2,
                changed: true
            }
        );
        assert_eq!(
            store.apply(new("a", "h1")).unwrap(),
            Applied {
                revision: 1,
                changed: false
            }
        );
        assert_eq!(
            store.apply(new("a", "h2")).unwrap(),
            Applied {
                revision: 3,
                changed: true
            }
        );
        let cur = store.current().unwrap();
        assert_eq!(
            cur.iter()
                .map(|r| (r.name.as_str(), r.revision))
                .collect::<Vec<_>>(),
            [("a", 3), ("b", 2)]
        );
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.apply(new("c", "h")).unwrap().revision,
            4,
            "numbering survives a reopen"
        );
    }
}
