//! The policy store: every applied policy is an immutable revision.
//!
//! [`PolicyStore`] is the small trait the rest of the control plane uses; [`SledStore`]
//! implements it on sled (0.34), whose on-disk format is old and may change, so nothing
//! outside this module knows it is sled. With the cargo feature `etcd`, [`etcd::EtcdStore`]
//! implements it on an etcd cluster shared by several replicas; [`open`] picks one from
//! `--store`. The same conformance suite (tests/integration/tests/store_conformance.rs)
//! runs against both.
//!
//! A delete is a revision too (a tombstone), and a rollback stores a new revision whose
//! content is an older one's, so history only ever grows and both can be undone.
//!
//! Sled layout (keys are bytes):
//!
//! ```text
//! tree "revisions": u64 revision (big-endian)          -> Revision as JSON   (immutable)
//! tree "current":   policy name (UTF-8)                -> u64 revision (big-endian)
//! tree "by_name":   name, 0x00, u64 revision (BE)      -> empty (history index)
//! tree "meta":      "last_revision"                    -> u64 (big-endian)
//! tree "withdrawn": u64 revision (BE)                   -> why its rollout was rolled back
//! tree "rollouts":  policy name                         -> its latest rollout (JSON, owned by `rollout`)
//! tree "labels":    node name                           -> label overrides (JSON map)
//! ```
//!
//! A rolled-back rollout moves the current pointer back (`revert`) and records why in
//! "withdrawn"; the withdrawn revision itself stays, unchanged, in the history.
//!
//! An apply writes all four in one transaction and flushes before it returns, so a crash
//! at any point leaves either the old revision current or the new one, never half of it.

use cluster::{Fence, Replication};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::path::Path;

pub mod cluster;
#[cfg(feature = "etcd")]
pub mod etcd;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("--store {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("policy store unavailable: no etcd member answered (tried {endpoints}): {detail}")]
    Unavailable { endpoints: String, detail: String },
    #[error("policy store: etcd at {endpoints}: {detail}")]
    Etcd { endpoints: String, detail: String },
    #[error("policy store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("policy store: {0}")]
    Sled(#[from] sled::Error),
    #[error("policy store holds a corrupt record under {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("no policy named {0:?}")]
    NoSuchPolicy(String),
    #[error("policy {name:?} has no revision {revision}")]
    NoSuchRevision { name: String, revision: u64 },
    #[error("policy {name:?} is already deleted (revision {revision})")]
    AlreadyDeleted { name: String, revision: u64 },
    #[error(
        "this replica no longer drives rollouts (its election lease ended); another replica \
         carries on: nothing written"
    )]
    NotDriver,
    #[error("policy {name:?}: current revision is {actual}, not {expected}; nothing reverted")]
    NotCurrent {
        name: String,
        expected: u64,
        actual: u64,
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
    /// A tombstone: this revision deleted the policy.
    #[serde(default)]
    pub deleted: bool,
    /// Non-zero when this revision restored that older revision's content.
    #[serde(default)]
    pub restored_from: u64,
    /// Why a rollout of this revision was rolled back, if one was (kept beside the
    /// immutable record, filled in on read).
    #[serde(skip)]
    pub withdrawn: String,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub revision: u64,
    /// False when the content equals the current revision's: nothing was written.
    pub changed: bool,
}

/// A new revision to store; the store assigns the number.
#[derive(Debug, Clone, Default)]
pub struct NewRevision<'a> {
    pub name: &'a str,
    pub content_hash: &'a str,
    pub file: &'a str,
    pub source: &'a str,
    pub ir_json: &'a str,
    pub author: &'a str,
    pub deleted: bool,
    pub restored_from: u64,
}

/// The content hash every tombstone carries, so deleting twice is a no-op.
pub const TOMBSTONE_HASH: &str = "tombstone";

pub trait PolicyStore: Send + Sync + 'static {
    /// Stores `new` as the current revision of its policy, atomically and durably; a no-op
    /// when the current revision has the same content hash.
    fn apply(&self, new: NewRevision<'_>) -> Result<Applied, StoreError>;
    /// The current revision of every policy that is not deleted, by name.
    fn current(&self) -> Result<Vec<Revision>, StoreError>;
    /// Revision `revision` of `name`, or its current revision (tombstone included) for None.
    fn get(&self, name: &str, revision: Option<u64>) -> Result<Option<Revision>, StoreError>;
    /// Every revision of `name`, oldest first.
    fn history(&self, name: &str) -> Result<Vec<Revision>, StoreError>;

    /// Makes revision `to` of `name` current again (0: the policy had none, so it has no
    /// current revision afterwards) if `expected` is current, and records `why` beside
    /// `expected`. Used only to roll back a rollout that never reached the whole fleet;
    /// with [`Fence::Driver`], only while this replica drives rollouts.
    fn revert(
        &self,
        name: &str,
        expected: u64,
        to: u64,
        why: &str,
        fence: Fence,
    ) -> Result<(), StoreError>;

    /// Saves the latest rollout of a policy (opaque bytes, see `rollout`) if the saved one
    /// is still `expected` (None: there is none); false when it is not (someone else
    /// wrote it: read it again). With [`Fence::Driver`], only while this replica drives
    /// rollouts ([`StoreError::NotDriver`] otherwise).
    fn put_rollout(
        &self,
        policy: &str,
        expected: Option<&[u8]>,
        record: &[u8],
        fence: Fence,
    ) -> Result<bool, StoreError>;
    /// The saved rollout of one policy.
    fn rollout(&self, policy: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every saved rollout.
    fn rollouts(&self) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Saves a node's label overrides (opaque bytes, see `fleet`).
    /// Saves a node's label overrides (opaque bytes, see `fleet`) if the saved ones are
    /// still `expected` (None: none); false when they are not (read them again).
    fn put_labels(
        &self,
        node: &str,
        expected: Option<&[u8]>,
        record: &[u8],
    ) -> Result<bool, StoreError>;
    /// One node's saved label overrides.
    fn labels_of(&self, node: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every node's label overrides.
    fn labels(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// `sled` or `etcd`.
    fn kind(&self) -> &'static str;
    /// Sharing with other replicas, for a store that can (etcd); None: this replica is
    /// alone and drives rollouts.
    fn replication(&self) -> Option<&dyn Replication> {
        None
    }

    /// Stores a new revision of `name` with the content of revision `to`.
    fn rollback(&self, name: &str, to: u64, author: &str) -> Result<Applied, StoreError> {
        let old = self
            .get(name, Some(to))?
            .ok_or_else(|| StoreError::NoSuchRevision {
                name: name.to_string(),
                revision: to,
            })?;
        self.apply(NewRevision {
            name,
            content_hash: &old.content_hash,
            file: &old.file,
            source: &old.source,
            ir_json: &old.ir_json,
            author,
            deleted: old.deleted,
            restored_from: to,
        })
    }

    /// Stores a tombstone for `name`.
    fn delete(&self, name: &str, author: &str) -> Result<Applied, StoreError> {
        match self.get(name, None)? {
            None => Err(StoreError::NoSuchPolicy(name.to_string())),
            Some(cur) if cur.deleted => Err(StoreError::AlreadyDeleted {
                name: name.to_string(),
                revision: cur.revision,
            }),
            Some(_) => self.apply(NewRevision {
                name,
                content_hash: TOMBSTONE_HASH,
                author,
                deleted: true,
                ..Default::default()
            }),
        }
    }
}

/// Opens the store `--store` names: `None` or `sled` for sled in `data`;
/// `etcd://host:port,host:port[/name]` for etcd (keys under `/<name>/v1/`, default
/// `palisade`), which needs the cargo feature `etcd`.
pub fn open(spec: Option<&str>, data: &Path) -> Result<Box<dyn PolicyStore>, StoreError> {
    let bad = |why: &str| StoreError::BadUrl {
        url: spec.unwrap_or_default().to_string(),
        why: why.to_string(),
    };
    match spec.map(str::trim) {
        None | Some("") | Some("sled") | Some("sled://") => Ok(Box::new(SledStore::open(data)?)),
        Some(s) if s.starts_with("etcd://") => {
            let rest = &s["etcd://".len()..];
            let (hosts, name) = rest.split_once('/').unwrap_or((rest, ""));
            let endpoints: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from)
                .collect();
            if endpoints.is_empty() {
                return Err(bad("no etcd endpoint: write etcd://host:2379,host:2379"));
            }
            if let Some(h) = endpoints.iter().find(|h| !h.contains(':')) {
                return Err(bad(&format!("endpoint {h:?} has no port (host:2379)")));
            }
            let name = name.trim_matches('/');
            if name.contains('/') {
                return Err(bad("the name after the endpoints is one path segment"));
            }
            open_etcd(
                endpoints,
                if name.is_empty() { "palisade" } else { name },
                &bad,
            )
        }
        Some(_) => Err(bad(
            "unknown store: use `sled` (the default, in --data) or etcd://host:2379,host:2379",
        )),
    }
}

#[cfg(feature = "etcd")]
fn open_etcd(
    endpoints: Vec<String>,
    name: &str,
    _bad: &dyn Fn(&str) -> StoreError,
) -> Result<Box<dyn PolicyStore>, StoreError> {
    let mut cfg = etcd::EtcdConfig::new(endpoints);
    cfg.prefix = format!("/{name}/v1/");
    Ok(Box::new(etcd::EtcdStore::connect(cfg)?))
}

#[cfg(not(feature = "etcd"))]
fn open_etcd(
    _endpoints: Vec<String>,
    _name: &str,
    bad: &dyn Fn(&str) -> StoreError,
) -> Result<Box<dyn PolicyStore>, StoreError> {
    Err(bad(
        "this palisade-controlplane was built without etcd support \
         (cargo build -p palisade-controlplane --features etcd)",
    ))
}

pub struct SledStore {
    db: sled::Db,
    revisions: sled::Tree,
    current: sled::Tree,
    by_name: sled::Tree,
    meta: sled::Tree,
    withdrawn: sled::Tree,
    rollouts: sled::Tree,
    labels: sled::Tree,
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

fn name_prefix(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k
}

/// Opens a sled database, waiting up to 5 s for a previous holder of its lock to let go
/// (a control plane restarted right after the old one exited, or reopened in-process while
/// sled's flusher thread still winds down). After that, the lock error is returned.
pub(crate) fn open_sled(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = open_sled(&dir.join("policies.sled")).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(SledStore {
            revisions: db.open_tree("revisions")?,
            current: db.open_tree("current")?,
            by_name: db.open_tree("by_name")?,
            meta: db.open_tree("meta")?,
            withdrawn: db.open_tree("withdrawn")?,
            rollouts: db.open_tree("rollouts")?,
            labels: db.open_tree("labels")?,
            db,
        })
    }

    /// The database, for other trees that live beside the policies (the audit log).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Replaces `key`'s record in `tree` if it is still `expected` (None: absent),
    /// durably; false when it is not.
    fn put_if(
        &self,
        tree: &sled::Tree,
        key: &str,
        expected: Option<&[u8]>,
        record: &[u8],
    ) -> Result<bool, StoreError> {
        if tree
            .compare_and_swap(key.as_bytes(), expected, Some(record))?
            .is_err()
        {
            return Ok(false);
        }
        self.db.flush()?;
        Ok(true)
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Revision, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            key: key.to_string(),
            source,
        })
    }

    fn revision(&self, rev: u64) -> Result<Option<Revision>, StoreError> {
        match self.revisions.get(be(rev))? {
            Some(bytes) => {
                let mut r = Self::decode(&format!("revision {rev}"), &bytes)?;
                if let Some(why) = self.withdrawn.get(be(rev))? {
                    r.withdrawn = String::from_utf8_lossy(&why).into_owned();
                }
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }
}

impl PolicyStore for SledStore {
    fn apply(&self, new: NewRevision<'_>) -> Result<Applied, StoreError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let outcome = (&self.revisions, &self.current, &self.by_name, &self.meta).transaction(
            |(revs, cur, by_name, meta)| {
                if let Some(rev) = cur.get(new.name.as_bytes())?
                    && let Some(bytes) = revs.get(rev.as_ref())?
                    && let Ok(old) = serde_json::from_slice::<Revision>(&bytes)
                    && old.content_hash == new.content_hash
                    && old.deleted == new.deleted
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
                    deleted: new.deleted,
                    restored_from: new.restored_from,
                    withdrawn: String::new(),
                };
                let json = serde_json::to_vec(&record).expect("revision serialises");
                revs.insert(&be(revision), json)?;
                cur.insert(new.name.as_bytes(), &be(revision))?;
                let mut idx = name_prefix(new.name);
                idx.extend_from_slice(&be(revision));
                by_name.insert(idx, &[])?;
                meta.insert(LAST_REVISION, &be(revision))?;
                Ok(Applied {
                    revision,
                    changed: true,
                })
            },
        );
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

    fn revert(
        &self,
        name: &str,
        expected: u64,
        to: u64,
        why: &str,
        _fence: Fence,
    ) -> Result<(), StoreError> {
        let outcome = (&self.current, &self.withdrawn).transaction(|(cur, withdrawn)| {
            let actual = cur.get(name.as_bytes())?.map(|b| from_be(&b)).unwrap_or(0);
            if actual != expected {
                return sled::transaction::abort(actual);
            }
            if to == 0 {
                cur.remove(name.as_bytes())?;
            } else {
                cur.insert(name.as_bytes(), &be(to))?;
            }
            withdrawn.insert(&be(expected), why.as_bytes())?;
            Ok(())
        });
        outcome.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(actual) => StoreError::NotCurrent {
                name: name.to_string(),
                expected,
                actual,
            },
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        })?;
        self.db.flush()?;
        Ok(())
    }

    fn put_rollout(
        &self,
        policy: &str,
        expected: Option<&[u8]>,
        record: &[u8],
        _fence: Fence,
    ) -> Result<bool, StoreError> {
        // One replica: it always drives.
        self.put_if(&self.rollouts, policy, expected, record)
    }

    fn rollout(&self, policy: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.rollouts.get(policy.as_bytes())?.map(|v| v.to_vec()))
    }

    fn kind(&self) -> &'static str {
        "sled"
    }

    fn rollouts(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rollouts
            .iter()
            .values()
            .map(|v| Ok(v?.to_vec()))
            .collect()
    }

    fn put_labels(
        &self,
        node: &str,
        expected: Option<&[u8]>,
        record: &[u8],
    ) -> Result<bool, StoreError> {
        self.put_if(&self.labels, node, expected, record)
    }

    fn labels_of(&self, node: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.labels.get(node.as_bytes())?.map(|v| v.to_vec()))
    }

    fn labels(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.labels
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn current(&self) -> Result<Vec<Revision>, StoreError> {
        let mut out = Vec::new();
        for item in self.current.iter() {
            let (_, rev) = item?;
            if let Some(r) = self.revision(from_be(&rev))?
                && !r.deleted
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn get(&self, name: &str, revision: Option<u64>) -> Result<Option<Revision>, StoreError> {
        let rev = match revision {
            Some(r) => r,
            None => match self.current.get(name.as_bytes())? {
                Some(b) => from_be(&b),
                None => return Ok(None),
            },
        };
        Ok(self.revision(rev)?.filter(|r| r.name == name))
    }

    fn history(&self, name: &str) -> Result<Vec<Revision>, StoreError> {
        let prefix = name_prefix(name);
        let mut out = Vec::new();
        for item in self.by_name.scan_prefix(&prefix) {
            let (k, _) = item?;
            if let Some(r) = self.revision(from_be(&k[prefix.len()..]))? {
                out.push(r);
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
            ..Default::default()
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

    #[test]
    fn history_rollback_and_delete_are_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.apply(new("a", "h1")).unwrap();
        store.apply(new("b", "x")).unwrap();
        store.apply(new("a", "h2")).unwrap();
        let back = store.rollback("a", 1, "operator:o").unwrap();
        assert_eq!(
            back,
            Applied {
                revision: 4,
                changed: true
            }
        );
        let r4 = store.get("a", None).unwrap().unwrap();
        assert_eq!((r4.content_hash.as_str(), r4.restored_from), ("h1", 1));
        assert!(
            !store.rollback("a", 1, "o").unwrap().changed,
            "same content again"
        );
        assert!(
            matches!(
                store.rollback("a", 2, "o"),
                Err(StoreError::NoSuchRevision { .. })
            ),
            "revision 2 belongs to b"
        );

        assert_eq!(store.delete("a", "o").unwrap().revision, 5);
        assert!(matches!(
            store.delete("a", "o"),
            Err(StoreError::AlreadyDeleted { revision: 5, .. })
        ));
        assert!(matches!(
            store.delete("zz", "o"),
            Err(StoreError::NoSuchPolicy(_))
        ));
        assert_eq!(
            store
                .current()
                .unwrap()
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["b"],
            "a deleted policy is not served"
        );
        assert!(store.get("a", None).unwrap().unwrap().deleted);
        assert_eq!(store.rollback("a", 3, "o").unwrap().revision, 6, "undelete");
        assert_eq!(store.current().unwrap().len(), 2);
        let hist: Vec<(u64, bool)> = store
            .history("a")
            .unwrap()
            .iter()
            .map(|r| (r.revision, r.deleted))
            .collect();
        assert_eq!(
            hist,
            [(1, false), (3, false), (4, false), (5, true), (6, false)]
        );
        assert_eq!(store.history("b").unwrap().len(), 1);
        assert!(store.history("nope").unwrap().is_empty());
    }

    #[test]
    fn revert_moves_the_current_pointer_back_and_records_why() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let r1 = s.apply(new("web", "h1")).unwrap().revision;
        let r2 = s.apply(new("web", "h2")).unwrap().revision;
        // Only from the expected current revision.
        assert!(matches!(
            s.revert("web", r1, 0, "x", Fence::None),
            Err(StoreError::NotCurrent { actual, .. }) if actual == r2
        ));
        s.revert("web", r2, r1, "gate failed", Fence::None).unwrap();
        assert_eq!(s.get("web", None).unwrap().unwrap().revision, r1);
        let h = s.history("web").unwrap();
        assert_eq!(h.len(), 2, "history keeps the withdrawn revision");
        assert_eq!(h[1].withdrawn, "gate failed");
        assert_eq!(h[0].withdrawn, "");
        // A policy that had no earlier revision has none current afterwards.
        let n1 = s.apply(new("fresh", "f1")).unwrap().revision;
        s.revert("fresh", n1, 0, "gate failed", Fence::None)
            .unwrap();
        assert!(s.get("fresh", None).unwrap().is_none());
        assert!(s.current().unwrap().iter().all(|r| r.name != "fresh"));
        // Applying the same content again is a new revision, not a no-op.
        let again = s.apply(new("web", "h2")).unwrap();
        assert!(again.changed && again.revision > r2);
        drop(s);
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.history("web").unwrap()[1].withdrawn, "gate failed");
        assert!(s.put_rollout("web", None, b"{}", Fence::None).unwrap());
        assert!(
            !s.put_rollout("web", None, b"{\"x\":1}", Fence::None)
                .unwrap(),
            "a rollout record is replaced only from the one expected"
        );
        assert!(
            s.put_rollout("web", Some(b"{}"), b"{}", Fence::Driver)
                .unwrap()
        );
        assert_eq!(s.rollout("web").unwrap().as_deref(), Some(&b"{}"[..]));
        assert!(s.put_labels("n1", None, b"{\"a\":\"b\"}").unwrap());
        assert_eq!(s.rollouts().unwrap(), vec![b"{}".to_vec()]);
        assert_eq!(s.labels().unwrap()[0].0, "n1");
    }
}
