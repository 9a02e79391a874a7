//! [`EtcdStore`]: the policy store on an etcd cluster (3.4 or newer), so that several
//! control-plane replicas share one history and no single disk holds the only copy.
//!
//! Layout, under a prefix (default `/palisade/v1/`; names are percent-encoded so that
//! they hold no `/`):
//!
//! ```text
//! counter                        -> last revision number (decimal)
//! cur/<policy>                   -> its current revision number (decimal)
//! rev/<policy>/<20-digit rev>    -> Revision as JSON, exactly as sled stores it (immutable)
//! withdrawn/<policy>/<20-digit>  -> why that revision's rollout was rolled back
//! rollouts/<policy>              -> its latest rollout (opaque, see `rollout`)
//! labels/<node>                  -> its label overrides (opaque, see `fleet`)
//! ```
//!
//! An apply writes the counter, the pointer and the revision in ONE transaction guarded by
//! the mod_revision of the counter and of the pointer as they were read; on a conflict it
//! reads again and retries, so numbers stay dense and the same-content no-op is decided on
//! what is current. If a transaction's outcome is unknown (the connection broke) the
//! retry finds its own record current and reports it as the change it was, so a retried
//! apply never makes a second revision. Only current keys are ever read, never older MVCC
//! revisions, so etcd's history can be compacted freely.
//!
//! The trait is synchronous and etcd-client is async: the store owns a small tokio runtime
//! of its own and every call runs there while the caller's thread waits for its answer
//! (as it waits for sled's disk). That works from plain threads and from inside another
//! runtime's tasks alike. Every request has a short timeout, and transient failures are
//! retried for a few seconds at most; then the call fails with
//! [`StoreError::Unavailable`], naming the endpoints tried.

mod replication;

pub use replication::LEASE_TTL;

use super::{Applied, NewRevision, PolicyStore, Revision, StoreError};
use crate::store::cluster::{Change, Fence, ReplicaInfo, Replication};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How an [`EtcdStore`] reaches its cluster.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` or `http://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// Key prefix, e.g. `/palisade/v1/` (ends with `/`).
    pub prefix: String,
    /// Connect and per-request timeout.
    pub request_timeout: Duration,
    /// How long transient failures (no leader, a member down) are retried.
    pub retry_for: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: "/palisade/v1/".into(),
            request_timeout: Duration::from_secs(2),
            retry_for: Duration::from_secs(4),
        }
    }
}

pub struct EtcdStore {
    inner: Arc<Inner>,
    /// Runs every request; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
}

struct Inner {
    client: Client,
    cfg: EtcdConfig,
    endpoints: String,
    standing: replication::Standing,
    /// Set when a request found no member for a whole retry window, cleared by the next
    /// answer: while it is set, requests are tried once, not retried, so callers (an
    /// apply, a node session) learn at once that the store is down.
    down: std::sync::atomic::AtomicBool,
}

/// What one request ended in: an answer, a refusal, or no answer in time.
enum Failure {
    Transient(String),
    Fatal(String),
}

fn classify(e: etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match &e {
        E::TransportError(_) | E::IoError(_) => Failure::Transient(e.to_string()),
        E::GRpcStatus(s) => match s.code() {
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
            | tonic::Code::Aborted
            | tonic::Code::ResourceExhausted => Failure::Transient(e.to_string()),
            _ => Failure::Fatal(e.to_string()),
        },
        _ => Failure::Fatal(e.to_string()),
    }
}

/// Percent-encodes everything but `[A-Za-z0-9._-]`, so a name never holds `/`.
fn enc(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn number(kv: &KeyValue) -> u64 {
    std::str::from_utf8(kv.value())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn gets(resp: etcd_client::TxnResponse) -> Vec<Vec<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs(),
            _ => Vec::new(),
        })
        .collect()
}

impl Inner {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.cfg.prefix)
    }
    fn counter_key(&self) -> String {
        self.key("counter")
    }
    fn cur_key(&self, name: &str) -> String {
        self.key(&format!("cur/{}", enc(name)))
    }
    fn rev_key(&self, name: &str, rev: u64) -> String {
        self.key(&format!("rev/{}/{rev:020}", enc(name)))
    }
    fn withdrawn_key(&self, name: &str, rev: u64) -> String {
        self.key(&format!("withdrawn/{}/{rev:020}", enc(name)))
    }

    fn unavailable(&self, detail: String) -> StoreError {
        StoreError::Unavailable {
            endpoints: self.endpoints.clone(),
            detail,
        }
    }

    /// One request, with the timeout.
    async fn once<T, Fut>(&self, fut: Fut) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.within(self.cfg.request_timeout, fut).await
    }

    async fn within<T, Fut>(&self, limit: Duration, fut: Fut) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let got = match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(Failure::Transient(format!("no answer within {limit:?}"))),
        };
        if !matches!(got, Err(Failure::Transient(_))) {
            self.down.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        got
    }

    /// Whether the last requests found no member (see `down`).
    fn known_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A request that changes nothing, or changes it the same way when repeated, retried
    /// while failures are transient, for at most `retry_for` in all (once, when the store
    /// is known to be down).
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = Instant::now();
        let window = if self.known_down() {
            Duration::ZERO
        } else {
            self.cfg.retry_for
        };
        loop {
            let left = window.saturating_sub(start.elapsed());
            let limit = self
                .cfg
                .request_timeout
                .min(left.max(Duration::from_millis(200)));
            match self.within(limit, f(self.client.clone())).await {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(detail)) => return Err(self.fatal(detail)),
                Err(Failure::Transient(detail)) => {
                    if start.elapsed() + Duration::from_millis(100) >= window {
                        self.down.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(self.unavailable(detail));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn fatal(&self, detail: String) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            detail,
        }
    }

    /// Several gets in one consistent read.
    async fn read(&self, ops: Vec<TxnOp>) -> Result<Vec<Vec<KeyValue>>, StoreError> {
        let resp = self
            .retry(|mut c| {
                let t = Txn::new().and_then(ops.clone());
                async move { c.txn(t).await }
            })
            .await?;
        Ok(gets(resp))
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Revision, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            key: key.to_string(),
            source,
        })
    }

    async fn revision(&self, name: &str, rev: u64) -> Result<Option<Revision>, StoreError> {
        let rk = self.rev_key(name, rev);
        let got = self
            .read(vec![
                TxnOp::get(rk.clone(), None),
                TxnOp::get(self.withdrawn_key(name, rev), None),
            ])
            .await?;
        let Some(kv) = got[0].first() else {
            return Ok(None);
        };
        let mut r = Self::decode(&rk, kv.value())?;
        if let Some(w) = got[1].first() {
            r.withdrawn = String::from_utf8_lossy(w.value()).into_owned();
        }
        Ok(Some(r))
    }

    async fn apply(&self, new: OwnedNew) -> Result<Applied, StoreError> {
        let start = Instant::now();
        let counter_key = self.counter_key();
        let cur_key = self.cur_key(&new.name);
        // The revision and creation time of a transaction whose outcome is unknown.
        let mut attempted: Option<(u64, i64)> = None;
        loop {
            let got = self
                .read(vec![
                    TxnOp::get(counter_key.clone(), None),
                    TxnOp::get(cur_key.clone(), None),
                ])
                .await?;
            let (last, counter_mod) = got[0]
                .first()
                .map(|kv| (number(kv), kv.mod_revision()))
                .unwrap_or((0, 0));
            let (cur, cur_mod) = got[1]
                .first()
                .map(|kv| (number(kv), kv.mod_revision()))
                .unwrap_or((0, 0));
            if cur != 0
                && let Some(old) = self.revision(&new.name, cur).await?
                && old.content_hash == new.content_hash
                && old.deleted == new.deleted
            {
                let ours = attempted == Some((old.revision, old.created_unix_ms))
                    && old.author == new.author;
                return Ok(Applied {
                    revision: old.revision,
                    changed: ours,
                });
            }
            let revision = last + 1;
            let now_ms = now_ms();
            let record = Revision {
                name: new.name.clone(),
                revision,
                content_hash: new.content_hash.clone(),
                file: new.file.clone(),
                source: new.source.clone(),
                ir_json: new.ir_json.clone(),
                author: new.author.clone(),
                created_unix_ms: now_ms,
                deleted: new.deleted,
                restored_from: new.restored_from,
                withdrawn: String::new(),
            };
            let json = serde_json::to_vec(&record).expect("revision serialises");
            let txn = Txn::new()
                .when(vec![
                    Compare::mod_revision(counter_key.clone(), CompareOp::Equal, counter_mod),
                    Compare::mod_revision(cur_key.clone(), CompareOp::Equal, cur_mod),
                ])
                .and_then(vec![
                    TxnOp::put(counter_key.clone(), revision.to_string(), None),
                    TxnOp::put(cur_key.clone(), revision.to_string(), None),
                    TxnOp::put(self.rev_key(&new.name, revision), json, None),
                ]);
            let mut c = self.client.clone();
            match self.once(c.txn(txn)).await {
                Ok(resp) if resp.succeeded() => {
                    return Ok(Applied {
                        revision,
                        changed: true,
                    });
                }
                // Someone else wrote first: read again.
                Ok(_) => continue,
                Err(Failure::Fatal(detail)) => return Err(self.fatal(detail)),
                Err(Failure::Transient(detail)) => {
                    attempted = Some((revision, now_ms));
                    if start.elapsed() >= self.cfg.retry_for {
                        return Err(self.unavailable(detail));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn revert(
        &self,
        name: &str,
        expected: u64,
        to: u64,
        why: &str,
        fence: Fence,
    ) -> Result<(), StoreError> {
        let cur_key = self.cur_key(name);
        loop {
            let fenced = match fence {
                Fence::Driver => Some(self.fence()?),
                Fence::None => None,
            };
            let got = self.read(vec![TxnOp::get(cur_key.clone(), None)]).await?;
            let (actual, cur_mod) = got[0]
                .first()
                .map(|kv| (number(kv), kv.mod_revision()))
                .unwrap_or((0, 0));
            if actual != expected {
                return Err(StoreError::NotCurrent {
                    name: name.to_string(),
                    expected,
                    actual,
                });
            }
            let pointer = if to == 0 {
                TxnOp::delete(cur_key.clone(), None)
            } else {
                TxnOp::put(cur_key.clone(), to.to_string(), None)
            };
            let mut when = vec![Compare::mod_revision(
                cur_key.clone(),
                CompareOp::Equal,
                cur_mod,
            )];
            when.extend(fenced);
            let txn = Txn::new().when(when).and_then(vec![
                pointer,
                TxnOp::put(self.withdrawn_key(name, expected), why, None),
            ]);
            // Repeating it after an unknown outcome finds the pointer moved: NotCurrent.
            // Acceptable for the rollout driver, which reads the pointer again.
            let resp = self
                .retry(|mut c| {
                    let t = txn.clone();
                    async move { c.txn(t).await }
                })
                .await?;
            if resp.succeeded() {
                return Ok(());
            }
            if fence == Fence::Driver && self.fence_failed().await? {
                return Err(StoreError::NotDriver);
            }
        }
    }

    /// Replaces the record under `key` if it is still `expected` (None: absent); fenced
    /// on request.
    async fn put_if(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        record: Vec<u8>,
        fence: Fence,
    ) -> Result<bool, StoreError> {
        let mut when = vec![match expected {
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            Some(old) => Compare::value(key.clone(), CompareOp::Equal, old),
        }];
        if fence == Fence::Driver {
            when.push(self.fence()?);
        }
        let txn = Txn::new()
            .when(when)
            .and_then(vec![TxnOp::put(key, record, None)]);
        // Repeating it after an unknown outcome compares against the record it wrote and
        // reports a conflict; the caller reads the record again and finds its own.
        let resp = self
            .retry(|mut c| {
                let t = txn.clone();
                async move { c.txn(t).await }
            })
            .await?;
        if resp.succeeded() {
            return Ok(true);
        }
        if fence == Fence::Driver && self.fence_failed().await? {
            return Err(StoreError::NotDriver);
        }
        Ok(false)
    }

    async fn range(&self, rest: &str) -> Result<Vec<KeyValue>, StoreError> {
        let key = self.key(rest);
        let mut resp = self
            .retry(|mut c| {
                let k = key.clone();
                async move { c.get(k, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(resp.take_kvs())
    }

    async fn current(&self) -> Result<Vec<Revision>, StoreError> {
        let pointers = self.range("cur/").await?;
        let strip = self.key("cur/").len();
        let mut out = Vec::new();
        // etcd limits the operations of one transaction (128 by default).
        for chunk in pointers.chunks(60) {
            let mut ops = Vec::new();
            let mut keys = Vec::new();
            for kv in chunk {
                let name = dec(&String::from_utf8_lossy(&kv.key()[strip..]));
                let rev = number(kv);
                let rk = self.rev_key(&name, rev);
                ops.push(TxnOp::get(rk.clone(), None));
                ops.push(TxnOp::get(self.withdrawn_key(&name, rev), None));
                keys.push(rk);
            }
            let got = self.read(ops).await?;
            for (i, rk) in keys.iter().enumerate() {
                if let Some(kv) = got[2 * i].first() {
                    let mut r = Self::decode(rk, kv.value())?;
                    if let Some(w) = got[2 * i + 1].first() {
                        r.withdrawn = String::from_utf8_lossy(w.value()).into_owned();
                    }
                    if !r.deleted {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn get(&self, name: &str, revision: Option<u64>) -> Result<Option<Revision>, StoreError> {
        let rev = match revision {
            Some(r) => r,
            None => {
                let got = self
                    .read(vec![TxnOp::get(self.cur_key(name), None)])
                    .await?;
                match got[0].first() {
                    Some(kv) => number(kv),
                    None => return Ok(None),
                }
            }
        };
        self.revision(name, rev).await
    }

    async fn history(&self, name: &str) -> Result<Vec<Revision>, StoreError> {
        let revs = self.key(&format!("rev/{}/", enc(name)));
        let withdrawn = self.key(&format!("withdrawn/{}/", enc(name)));
        let got = self
            .read(vec![
                TxnOp::get(revs, Some(GetOptions::new().with_prefix())),
                TxnOp::get(withdrawn.clone(), Some(GetOptions::new().with_prefix())),
            ])
            .await?;
        let why: std::collections::HashMap<u64, String> = got[1]
            .iter()
            .filter_map(|kv| {
                let n = std::str::from_utf8(&kv.key()[withdrawn.len()..]).ok()?;
                Some((
                    n.parse().ok()?,
                    String::from_utf8_lossy(kv.value()).into_owned(),
                ))
            })
            .collect();
        let mut out = Vec::new();
        for kv in &got[0] {
            let mut r = Self::decode(&String::from_utf8_lossy(kv.key()), kv.value())?;
            if let Some(w) = why.get(&r.revision) {
                r.withdrawn = w.clone();
            }
            out.push(r);
        }
        Ok(out)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// [`NewRevision`] owned, to cross into the store's runtime.
struct OwnedNew {
    name: String,
    content_hash: String,
    file: String,
    source: String,
    ir_json: String,
    author: String,
    deleted: bool,
    restored_from: u64,
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers; fails (within about
    /// `request_timeout`) with [`StoreError::Unavailable`] when no member does.
    pub fn connect(cfg: EtcdConfig) -> Result<Self, StoreError> {
        let endpoints = cfg.endpoints.join(",");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("palisade-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Etcd {
                endpoints: endpoints.clone(),
                detail: format!("cannot start the etcd client's runtime: {e}"),
            })?;
        let options = ConnectOptions::new()
            .with_connect_timeout(cfg.request_timeout)
            .with_timeout(cfg.request_timeout)
            .with_keep_alive(Duration::from_secs(2), cfg.request_timeout)
            .with_require_leader(true);
        let urls: Vec<String> = cfg
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let eps = endpoints.clone();
        let timeout = cfg.request_timeout;
        let client = wait(&rt, async move {
            match tokio::time::timeout(timeout, Client::connect(urls, Some(options))).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(StoreError::Unavailable {
                    endpoints: eps,
                    detail: e.to_string(),
                }),
                Err(_) => Err(StoreError::Unavailable {
                    endpoints: eps,
                    detail: format!("no connection within {timeout:?}"),
                }),
            }
        })??;
        let store = EtcdStore {
            inner: Arc::new(Inner {
                client,
                cfg,
                endpoints,
                standing: Default::default(),
                down: Default::default(),
            }),
            rt: Some(rt),
        };
        // One read, one timeout (not the retry window): does anyone answer?
        store.call(|i| async move {
            let mut c = i.client.clone();
            match i.once(c.get(i.counter_key(), None)).await {
                Ok(_) => Ok(()),
                Err(Failure::Transient(detail)) => Err(i.unavailable(detail)),
                Err(Failure::Fatal(detail)) => Err(i.fatal(detail)),
            }
        })?;
        Ok(store)
    }

    /// Times this store's watch found its place compacted away and re-listed.
    pub fn relists(&self) -> u64 {
        self.inner
            .standing
            .relists
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The endpoints, comma-separated, as given.
    pub fn endpoints(&self) -> &str {
        &self.inner.endpoints
    }

    /// Compacts etcd's MVCC history up to now (nothing the store reads depends on it);
    /// returns the revision compacted to.
    pub fn compact(&self) -> Result<i64, StoreError> {
        self.call(|i| async move {
            let resp = i
                .retry(|mut c| async move { c.get("/", None).await })
                .await?;
            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            i.retry(|mut c| async move {
                c.compact(
                    rev,
                    Some(etcd_client::CompactionOptions::new().with_physical()),
                )
                .await
            })
            .await?;
            Ok(rev)
        })
    }

    /// Runs `f` on the store's runtime and waits for its answer.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime present until drop");
        let fut = f(self.inner.clone());
        // Called from a worker of the control plane's runtime (gRPC handlers, node
        // sessions), waiting must not stall that worker's other tasks while etcd is slow
        // or down.
        crate::blocking::off_runtime(|| wait(rt, fut))?
    }
}

/// Runs `fut` on `rt` and blocks the calling thread (which may belong to another runtime)
/// until it finishes.
fn wait<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| StoreError::Etcd {
        endpoints: String::new(),
        detail: "the etcd client's runtime stopped".into(),
    })
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime: let it go in
        // the background instead.
        if let Some(rt) = self.rt.take() {
            // A replica that stops cleanly gives up its lease at once, so another takes
            // over its nodes and the driver's key without waiting for the TTL.
            let lease = self
                .inner
                .standing
                .lease
                .swap(0, std::sync::atomic::Ordering::SeqCst);
            if lease != 0 {
                let mut c = self.inner.client.clone();
                let _ = wait(&rt, async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(lease)).await;
                });
            }
            rt.shutdown_background();
        }
    }
}

impl PolicyStore for EtcdStore {
    fn apply(&self, new: NewRevision<'_>) -> Result<Applied, StoreError> {
        let new = OwnedNew {
            name: new.name.to_string(),
            content_hash: new.content_hash.to_string(),
            file: new.file.to_string(),
            source: new.source.to_string(),
            ir_json: new.ir_json.to_string(),
            author: new.author.to_string(),
            deleted: new.deleted,
            restored_from: new.restored_from,
        };
        self.call(|i| async move { i.apply(new).await })
    }

    fn current(&self) -> Result<Vec<Revision>, StoreError> {
        self.call(|i| async move { i.current().await })
    }

    fn get(&self, name: &str, revision: Option<u64>) -> Result<Option<Revision>, StoreError> {
        let name = name.to_string();
        self.call(|i| async move { i.get(&name, revision).await })
    }

    fn history(&self, name: &str) -> Result<Vec<Revision>, StoreError> {
        let name = name.to_string();
        self.call(|i| async move { i.history(&name).await })
    }

    fn revert(
        &self,
        name: &str,
        expected: u64,
        to: u64,
        why: &str,
        fence: Fence,
    ) -> Result<(), StoreError> {
        let (name, why) = (name.to_string(), why.to_string());
        self.call(|i| async move { i.revert(&name, expected, to, &why, fence).await })
    }

    fn put_rollout(
        &self,
        policy: &str,
        expected: Option<&[u8]>,
        record: &[u8],
        fence: Fence,
    ) -> Result<bool, StoreError> {
        let (policy, expected, record) = (
            policy.to_string(),
            expected.map(<[u8]>::to_vec),
            record.to_vec(),
        );
        self.call(|i| async move {
            let key = i.key(&format!("rollouts/{}", enc(&policy)));
            i.put_if(key, expected, record, fence).await
        })
    }

    fn rollout(&self, policy: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.inner.key(&format!("rollouts/{}", enc(policy)));
        self.call(|i| async move {
            let got = i.read(vec![TxnOp::get(key, None)]).await?;
            Ok(got[0].first().map(|kv| kv.value().to_vec()))
        })
    }

    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn replication(&self) -> Option<&dyn Replication> {
        Some(self)
    }

    fn rollouts(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.call(|i| async move {
            Ok(i.range("rollouts/")
                .await?
                .into_iter()
                .map(|kv| kv.value().to_vec())
                .collect())
        })
    }

    fn put_labels(
        &self,
        node: &str,
        expected: Option<&[u8]>,
        record: &[u8],
    ) -> Result<bool, StoreError> {
        let (key, expected, record) = (
            self.inner.key(&format!("labels/{}", enc(node))),
            expected.map(<[u8]>::to_vec),
            record.to_vec(),
        );
        self.call(|i| async move { i.put_if(key, expected, record, Fence::None).await })
    }

    fn labels_of(&self, node: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.inner.key(&format!("labels/{}", enc(node)));
        self.call(|i| async move {
            let got = i.read(vec![TxnOp::get(key, None)]).await?;
            Ok(got[0].first().map(|kv| kv.value().to_vec()))
        })
    }

    fn labels(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.call(|i| async move {
            let strip = i.key("labels/").len();
            Ok(i.range("labels/")
                .await?
                .into_iter()
                .map(|kv| {
                    (
                        dec(&String::from_utf8_lossy(&kv.key()[strip..])),
                        kv.value().to_vec(),
                    )
                })
                .collect())
        })
    }
}

impl Replication for EtcdStore {
    fn join(
        &self,
        me: ReplicaInfo,
        changes: tokio::sync::mpsc::UnboundedSender<Change>,
    ) -> Result<(), StoreError> {
        let standing = &self.inner.standing;
        if standing
            .joined
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        *standing.me.lock().expect("standing lock") = Some(me);
        // The watch starts where the store is now; the Resync the membership task sends
        // first makes the replica re-read what came before.
        let from = self.call(|i| async move { i.head_revision().await })?;
        let rt = self.rt.as_ref().expect("runtime present until drop");
        rt.spawn(self.inner.clone().watch(from, changes.clone()));
        rt.spawn(self.inner.clone().membership(changes));
        Ok(())
    }

    fn is_driver(&self) -> bool {
        self.inner
            .standing
            .driver_rev
            .load(std::sync::atomic::Ordering::SeqCst)
            != 0
    }

    fn replicas(&self) -> Result<Vec<ReplicaInfo>, StoreError> {
        self.call(|i| async move { i.replicas().await })
    }

    fn put_presence(&self, node: &str, record: &[u8]) -> Result<(), StoreError> {
        let (node, record) = (node.to_string(), record.to_vec());
        self.call(|i| async move { i.put_presence(&node, record).await })
    }

    fn drop_presence(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_string();
        self.call(|i| async move { i.drop_presence(&node).await })
    }

    fn presences(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.call(|i| async move { i.presences().await })
    }

    fn endpoints(&self) -> String {
        self.inner.endpoints.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_without_slashes_and_decode_back() {
        for n in ["web", "a/b", "100%", "x y", "é", "a.b_c-d"] {
            let e = enc(n);
            assert!(!e.contains('/'), "{e}");
            assert_eq!(dec(&e), n);
        }
        assert_eq!(enc("a/b"), "a%2Fb");
    }
}
