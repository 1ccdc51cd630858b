//! [`RedbStore`]: an embedded, crash-safe store in one redb file.

use crate::hub::Hub;
use crate::memory::DEFAULT_HISTORY;
use crate::{
    Error, Expect, KvStore, Listing, Op, Versioned, WatchEvent, WatchStream, check_expect,
    check_key, check_ops, key_matches,
};
use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// key → (revision of its last write, value).
const KV: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("kv");
/// Store-wide counters; holds [`REVISION`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The store-global revision, updated in the same transaction as each write.
const REVISION: &str = "revision";

/// The store revision recorded in `meta` (0 for a new file).
fn stored_revision(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, Error> {
    let rev = meta.get(REVISION).map_err(|e| Error::backend(key, e))?;
    Ok(rev.map(|g| g.value()).unwrap_or(0))
}

/// A store in one redb file, owned by one process.
///
/// Every put, every effective delete and every [`KvStore::txn`] is one write
/// transaction, and it bumps the global revision kept in the `meta` table in
/// that same transaction, so a crash leaves either the old or the new state,
/// with a matching revision.
///
/// **Group commit.** A write is committed without an fsync (redb's
/// `Durability::None`: visible at once), then made durable by a flush: one
/// empty durable commit, which persists every commit before it. Writers
/// waiting at once share one flush, so a hundred concurrent writes cost a
/// few fsyncs, not a hundred in a row. [`KvStore::txn_unsynced`] returns
/// before the flush, for a caller that overlaps it with other work and calls
/// [`KvStore::sync`] when it needs the write durable.
///
/// Writes run on tokio's blocking pool (`spawn_blocking`): a commit waits for
/// an fsync, which must not stall the async worker threads. Reads are served
/// from redb's page cache and run inline. A committed write costs redb ~30 µs
/// plus the disk's fsync, which varies by machine (one development VM: ~2.5 ms;
/// another: ~0.1 ms). `trellis-bench attach` prints the disk's sync cost beside
/// the attach latency with this store, so the two can be read together.
///
/// Watches are served in-process: after a commit the event is published to an
/// in-memory history ([`DEFAULT_HISTORY`] events), which is enough because the
/// file has one owner (redb locks it). The history starts empty at open, so a
/// watch from a revision before the open fails with [`Error::Compacted`];
/// callers re-list and watch from the listing's revision.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Serialises commit + publish so that events are published in revision
    /// order (redb serialises the transactions themselves anyway).
    write: Mutex<()>,
    hub: Arc<Hub>,
    /// Commits made so far (a counter; non-durable ones included).
    committed: AtomicU64,
    /// Commits known durable: every commit up to this count.
    durable: AtomicU64,
    /// Serialises flushes, so that callers waiting at once share one.
    flushing: Mutex<()>,
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let db = Database::create(path).map_err(|e| Error::backend(&name, e))?;
        let txn = db.begin_write().map_err(|e| Error::backend(&name, e))?;
        let revision = {
            let meta = txn.open_table(META).map_err(|e| Error::backend(&name, e))?;
            txn.open_table(KV).map_err(|e| Error::backend(&name, e))?;
            stored_revision(&meta, &name)?
        };
        txn.commit().map_err(|e| Error::backend(&name, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                write: Mutex::new(()),
                hub: Hub::new(revision, DEFAULT_HISTORY),
                committed: AtomicU64::new(0),
                durable: AtomicU64::new(0),
                flushing: Mutex::new(()),
            }),
        })
    }

    /// The store revision as of now.
    fn list_revision(&self, key: &str) -> Result<u64, Error> {
        let be = |e: redb::Error| Error::backend(key, e);
        let txn = self.inner.db.begin_read().map_err(|e| be(e.into()))?;
        let meta = txn.open_table(META).map_err(|e| be(e.into()))?;
        stored_revision(&meta, key)
    }

    /// [`KvStore::txn`] (`synced`) or [`KvStore::txn_unsynced`].
    async fn txn_as(&self, ops: Vec<Op>, synced: bool) -> Result<u64, Error> {
        check_ops(&ops)?;
        let name = ops
            .first()
            .map(|op| op.key().to_owned())
            .unwrap_or_default();
        let write = move |inner: &Inner| {
            if synced {
                inner.apply_synced(ops)
            } else {
                inner.apply(ops)
            }
        };
        match self.blocking(&name, write).await? {
            Some(revision) => Ok(revision),
            None => Ok(self.list_revision(&name)?),
        }
    }

    /// Runs a write on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::backend(key, e))?
    }
}

impl Inner {
    /// Applies `ops` in one write transaction: checks every expectation,
    /// then writes, bumps the revision once per effective write, commits
    /// without an fsync ([`Inner::sync`] makes it durable) and publishes the
    /// events. `None`: nothing changed, the transaction is aborted.
    fn apply(&self, ops: Vec<Op>) -> Result<Option<u64>, Error> {
        let name = ops
            .first()
            .map(|op| op.key().to_owned())
            .unwrap_or_default();
        let be = |e: redb::Error| Error::backend(&name, e);
        let _serial = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut txn = self.db.begin_write().map_err(|e| be(e.into()))?;
        txn.set_durability(Durability::None)
            .map_err(|e| Error::backend(&name, e))?;
        let events = match stage(&txn, ops) {
            Ok(events) if !events.is_empty() => events,
            other => {
                txn.abort().map_err(|e| be(e.into()))?;
                return other.map(|_| None);
            }
        };
        let last = events.last().map(WatchEvent::revision).unwrap_or_default();
        {
            let mut meta = txn.open_table(META).map_err(|e| be(e.into()))?;
            meta.insert(REVISION, last).map_err(|e| be(e.into()))?;
        }
        txn.commit().map_err(|e| be(e.into()))?;
        self.committed.fetch_add(1, Ordering::AcqRel);
        for event in events {
            self.hub.publish(event);
        }
        Ok(Some(last))
    }

    /// [`Inner::apply`] and then [`Inner::sync`]: durable on return, and
    /// writers at once share their flushes (group commit).
    fn apply_synced(&self, ops: Vec<Op>) -> Result<Option<u64>, Error> {
        let done = self.apply(ops)?;
        self.sync()?;
        Ok(done)
    }

    /// Makes every commit made before the call durable: one empty durable
    /// commit (redb persists the non-durable ones before it with it),
    /// shared by every caller that waited for the same flush.
    fn sync(&self) -> Result<(), Error> {
        let target = self.committed.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _flush = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        // The flush just finished may have covered this caller.
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let be = |e: redb::Error| Error::backend("(sync)", e);
        let _serial = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let upto = self.committed.load(Ordering::Acquire);
        let txn = self.db.begin_write().map_err(|e| be(e.into()))?;
        txn.commit().map_err(|e| be(e.into()))?;
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }
}

/// Checks and writes `ops` inside `txn`; the events of the effective writes,
/// with revisions counted on from the stored one.
fn stage(txn: &WriteTransaction, ops: Vec<Op>) -> Result<Vec<WatchEvent>, Error> {
    let name = ops
        .first()
        .map(|op| op.key().to_owned())
        .unwrap_or_default();
    let be = |e: redb::Error| Error::backend(&name, e);
    let mut revision = {
        let meta = txn.open_table(META).map_err(|e| be(e.into()))?;
        stored_revision(&meta, &name)?
    };
    let mut kv = txn.open_table(KV).map_err(|e| be(e.into()))?;
    for op in &ops {
        let got = kv.get(op.key()).map_err(|e| be(e.into()))?;
        check_expect(op.key(), op.expected(), got.map(|g| g.value().0))?;
    }
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put { key, value, .. } => {
                revision += 1;
                kv.insert(key.as_str(), (revision, value.as_slice()))
                    .map_err(|e| Error::backend(&key, e))?;
                events.push(WatchEvent::Put {
                    key,
                    value,
                    revision,
                });
            }
            Op::Delete { key, .. } => {
                let removed = kv
                    .remove(key.as_str())
                    .map_err(|e| Error::backend(&key, e))?
                    .is_some();
                if removed {
                    revision += 1;
                    events.push(WatchEvent::Delete { key, revision });
                }
            }
        }
    }
    Ok(events)
}

#[async_trait]
impl KvStore for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, Error> {
        check_key(key)?;
        let be = |e: redb::Error| Error::backend(key, e);
        let txn = self.inner.db.begin_read().map_err(|e| be(e.into()))?;
        let kv = txn.open_table(KV).map_err(|e| be(e.into()))?;
        let got = kv.get(key).map_err(|e| be(e.into()))?;
        Ok(got.map(|g| {
            let (revision, value) = g.value();
            Versioned {
                value: value.to_vec(),
                revision,
            }
        }))
    }

    async fn put_if(&self, key: &str, value: Vec<u8>, expected: Expect) -> Result<u64, Error> {
        check_key(key)?;
        let op = Op::put(key, value, expected);
        let rev = self
            .blocking(key, move |inner| inner.apply_synced(vec![op]))
            .await?;
        rev.ok_or_else(|| Error::backend(key, "put committed no change"))
    }

    async fn delete_if(&self, key: &str, expected: Expect) -> Result<Option<u64>, Error> {
        check_key(key)?;
        let op = Op::delete(key, expected);
        self.blocking(key, move |inner| inner.apply_synced(vec![op]))
            .await
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<u64, Error> {
        self.txn_as(ops, true).await
    }

    async fn txn_unsynced(&self, ops: Vec<Op>) -> Result<u64, Error> {
        self.txn_as(ops, false).await
    }

    async fn sync(&self) -> Result<(), Error> {
        self.blocking("(sync)", Inner::sync).await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, Error> {
        let be = |e: redb::Error| Error::backend(prefix, e);
        let dir = prefix.strip_suffix('/').unwrap_or(prefix);
        let txn = self.inner.db.begin_read().map_err(|e| be(e.into()))?;
        let revision = {
            let meta = txn.open_table(META).map_err(|e| be(e.into()))?;
            stored_revision(&meta, prefix)?
        };
        let kv = txn.open_table(KV).map_err(|e| be(e.into()))?;
        let mut entries = Vec::new();
        for item in kv.range(dir..).map_err(|e| be(e.into()))? {
            let (k, v) = item.map_err(|e| be(e.into()))?;
            let key = k.value();
            if !key.starts_with(dir) {
                break;
            }
            if key_matches(prefix, key) {
                let (revision, value) = v.value();
                let value = value.to_vec();
                entries.push((key.to_owned(), Versioned { value, revision }));
            }
        }
        Ok(Listing { revision, entries })
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, Error> {
        self.inner.hub.watch(prefix, from_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        crate::conformance::run_all(|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            RedbStore::open(dir.path().join(format!("{i}.redb"))).unwrap()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes_and_everything_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(&path).unwrap();
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(
                    async move { s.put_if(&format!("w/{i}"), vec![1], Expect::Absent).await },
                )
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let (committed, durable) = (
            store.inner.committed.load(Ordering::Acquire),
            store.inner.durable.load(Ordering::Acquire),
        );
        assert_eq!(
            (committed, durable),
            (64, 64),
            "every write durable on return"
        );
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.list("w").await.unwrap().entries.len(), 64);
    }

    #[tokio::test]
    async fn an_unsynced_write_is_visible_at_once_and_durable_after_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(&path).unwrap();
        let rev = store
            .txn_unsynced(vec![Op::put("u/1", b"x".to_vec(), Expect::Absent)])
            .await
            .unwrap();
        let got = store.get("u/1").await.unwrap().unwrap();
        assert_eq!(got.revision, rev, "visible before any sync");
        assert!(
            store.inner.durable.load(Ordering::Acquire)
                < store.inner.committed.load(Ordering::Acquire)
        );
        store.sync().await.unwrap();
        assert_eq!(
            store.inner.durable.load(Ordering::Acquire),
            store.inner.committed.load(Ordering::Acquire)
        );
        // A second sync with nothing new is free (no flush).
        store.sync().await.unwrap();
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(
            store.get("u/1").await.unwrap().unwrap().value,
            b"x".to_vec()
        );
    }

    #[tokio::test]
    async fn data_and_revision_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(&path).unwrap();
        let r1 = store
            .put_if("a/x", b"1".to_vec(), Expect::Absent)
            .await
            .unwrap();
        let r2 = store
            .put_if("a/y", b"2".to_vec(), Expect::Absent)
            .await
            .unwrap();
        store.delete_if("a/y", Expect::Revision(r2)).await.unwrap();
        let rt = store
            .txn(vec![
                Op::put("b/1", b"t".to_vec(), Expect::Absent),
                Op::put("b/2", b"t".to_vec(), Expect::Absent),
            ])
            .await
            .unwrap();
        drop(store);

        let store = RedbStore::open(&path).unwrap();
        let got = store.get("a/x").await.unwrap().unwrap();
        assert_eq!(
            got,
            Versioned {
                value: b"1".to_vec(),
                revision: r1
            }
        );
        assert_eq!(store.get("a/y").await.unwrap(), None);
        let both = store.list("b").await.unwrap();
        assert_eq!(
            both.entries.len(),
            2,
            "a committed transaction is kept whole"
        );
        let listing = store.list("a").await.unwrap();
        assert_eq!(listing.revision, rt, "the last revision is kept");
        assert_eq!(rt, r2 + 3, "one delete and two puts after r2");
        let r4 = store
            .put_if("a/x", b"3".to_vec(), Expect::Revision(r1))
            .await
            .unwrap();
        assert_eq!(r4, rt + 1, "revisions keep increasing across reopen");
        // History does not survive a restart: watching the past is refused,
        // watching from the listing's next revision works.
        assert!(matches!(
            store.watch("a", 1).await,
            Err(Error::Compacted { .. })
        ));
        let _live = store.watch("a", listing.revision + 1).await.unwrap();
    }
}
