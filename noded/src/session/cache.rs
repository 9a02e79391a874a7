//! The node's local cache of the last desired state it enforced, in sled, so that a daemon
//! restarted while the control plane is unreachable enforces the same revisions with every
//! backend (network, LSM, seccomp profiles, scheduler classes) and reports them at
//! registration. Pinned maps keep the kernel state across restarts; this keeps the policies
//! those maps came from.
//!
//! Layout: one sled database `cache.sled` in the state directory; key `desired` holds the
//! `DesiredState` (protobuf bytes), written and flushed after every successful apply.

use palisade_proto::v1;
use prost::Message;
use std::path::{Path, PathBuf};

const DESIRED: &[u8] = b"desired";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("node state cache at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("node state cache: {0}")]
    Sled(#[from] sled::Error),
    #[error("node state cache holds an unreadable desired state: {0}")]
    Corrupt(#[from] prost::DecodeError),
}

pub struct NodeCache {
    db: sled::Db,
}

impl NodeCache {
    /// Opens (or creates) the cache under `dir`.
    pub fn open(dir: &Path) -> Result<NodeCache, CacheError> {
        let path = dir.join("cache.sled");
        let open = || -> Result<sled::Db, sled::Error> {
            std::fs::create_dir_all(dir)?;
            sled::open(&path)
        };
        let db = open().map_err(|source| CacheError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(NodeCache { db })
    }

    /// The last desired state stored, if any.
    pub fn load(&self) -> Result<Option<v1::DesiredState>, CacheError> {
        match self.db.get(DESIRED)? {
            Some(bytes) => Ok(Some(v1::DesiredState::decode(bytes.as_ref())?)),
            None => Ok(None),
        }
    }

    /// Stores `desired` durably (flushed before returning).
    pub fn store(&self, desired: &v1::DesiredState) -> Result<(), CacheError> {
        self.db.insert(DESIRED, desired.encode_to_vec())?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(rev: u64) -> v1::DesiredState {
        v1::DesiredState {
            policies: vec![v1::PolicyRevision {
                name: "web".into(),
                revision: rev,
                content_hash: format!("h{rev}"),
                ir_json: "{}".into(),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn round_trip_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = NodeCache::open(dir.path()).unwrap();
        assert_eq!(c.load().unwrap(), None);
        c.store(&desired(3)).unwrap();
        c.store(&desired(4)).unwrap();
        drop(c);
        // sled's flusher thread may hold the directory's lock for a moment after the drop
        // (as the previous daemon's process would until it exits): retry the reopen briefly.
        let c = (0..100)
            .find_map(|_| {
                NodeCache::open(dir.path())
                    .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .expect("the cache reopens once the previous handle is gone");
        assert_eq!(c.load().unwrap(), Some(desired(4)));
    }

    #[test]
    fn corrupt_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let c = NodeCache::open(dir.path()).unwrap();
        c.db.insert(DESIRED, &[0xff, 0xff, 0xff][..]).unwrap();
        assert!(matches!(c.load(), Err(CacheError::Corrupt(_))));
    }
}
