//! [`RedbStore`]: an embedded, crash-safe store in one redb file.

use crate::hub::Hub;
use crate::memory::DEFAULT_HISTORY;
use crate::redb_file::{commit_durable, failure, open_existing, open_or_create, poisons};
use crate::{
    Error, Expect, KvStore, Listing, Op, Versioned, WatchEvent, WatchStream, check_expect,
    check_key, check_ops, key_matches,
};
use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
    WriteTransaction,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// key → (revision of its last write, value).
const KV: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("kv");
/// Store-wide counters; holds [`REVISION`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The store-global revision, updated in the same transaction as each write.
const REVISION: &str = "revision";

/// The store revision recorded in `meta` (0 for a new file).
fn stored_revision(meta: &impl ReadableTable<&'static str, u64>) -> Result<u64, StorageError> {
    Ok(meta.get(REVISION)?.map(|g| g.value()).unwrap_or(0))
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
/// few flushes, not a hundred in a row. [`KvStore::txn_unsynced`] returns
/// before the flush, for a caller that overlaps it with other work and calls
/// [`KvStore::sync`] when it needs the write durable. A flush is a two-phase
/// commit (two fsyncs), so that a damaged file is refused at open instead of
/// rolled back (see `redb_file`).
///
/// **A damaged file is never replaced.** Opening refuses a file that does
/// not verify with [`Error::Corrupt`], naming it and leaving it as it was.
///
/// **I/O failures are not for ever.** A write that fails (a full disk, a
/// filesystem turned read-only) fails its call with [`Error::Io`], naming
/// the file and the OS error; redb then refuses every later call, so the
/// next call closes the file and opens it again, and the store works again
/// as soon as the file can be written. Writes that were visible but not yet
/// durable when the write failed are gone after the reopen: a
/// [`KvStore::sync`] that covered them fails, the revision goes on past the
/// events already published (a revision is never reused), and every watch
/// open at the time ends with [`Error::Compacted`], so that watchers re-list.
///
/// Writes run on tokio's blocking pool (`spawn_blocking`): a commit waits for
/// an fsync, which must not stall the async worker threads. Reads are served
/// from redb's page cache and run inline. A committed write costs redb ~30 µs
/// plus the disk's fsyncs, which vary by machine (one development VM: ~2.5 ms
/// each; another: ~0.1 ms). `trellis-bench attach` prints the disk's sync cost
/// beside the attach latency with this store, so the two can be read together.
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
    path: PathBuf,
    /// The open file; `None` after an I/O failure closed it and reopening
    /// failed.
    db: RwLock<Option<Database>>,
    /// An I/O failure made the open file unusable: reopen before use.
    broken: AtomicBool,
    /// Serialises commit + publish so that events are published in revision
    /// order (redb serialises the transactions themselves anyway), and
    /// reopening with writing.
    write: Mutex<()>,
    hub: Arc<Hub>,
    /// Commits made so far (a counter; non-durable ones included).
    committed: AtomicU64,
    /// Commits known durable: every commit up to this count.
    durable: AtomicU64,
    /// Commits lost to an I/O failure: the counts in `(from, to]` were made
    /// visible but never durable.
    lost: Mutex<(u64, u64)>,
    /// Serialises flushes, so that callers waiting at once share one.
    flushing: Mutex<()>,
}

/// A commit [`Inner::apply`] made: the store revision it wrote up to, and
/// its number in the count of commits (what a flush makes durable).
struct Commit {
    revision: u64,
    number: u64,
}

/// Locks `m`; a panic while it was held poisons nothing this store relies on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes sure the tables exist and the stored revision is at least
/// `at_least` (one durable commit); returns the revision stored before and
/// the one stored now.
fn prepare(path: &Path, db: &Database, at_least: u64) -> Result<(u64, u64), Error> {
    let be = |e: redb::Error| failure(path, "", e);
    let txn = db.begin_write().map_err(|e| be(e.into()))?;
    let stored = {
        let mut meta = txn.open_table(META).map_err(|e| be(e.into()))?;
        txn.open_table(KV).map_err(|e| be(e.into()))?;
        let stored = stored_revision(&meta).map_err(|e| be(e.into()))?;
        if stored < at_least {
            meta.insert(REVISION, at_least).map_err(|e| be(e.into()))?;
        }
        stored
    };
    commit_durable(path, "", txn)?;
    Ok((stored, stored.max(at_least)))
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if it does not exist.
    ///
    /// A file that exists but does not verify is refused with
    /// [`Error::Corrupt`] and left as it was; one that cannot be read or
    /// written, with [`Error::Io`]. Both name the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_owned();
        let db = open_or_create(&path)?;
        let (_, revision) = prepare(&path, &db, 0)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                db: RwLock::new(Some(db)),
                broken: AtomicBool::new(false),
                write: Mutex::new(()),
                hub: Hub::new(revision, DEFAULT_HISTORY),
                committed: AtomicU64::new(0),
                durable: AtomicU64::new(0),
                lost: Mutex::new((0, 0)),
                flushing: Mutex::new(()),
            }),
        })
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
                Ok(inner.apply(ops)?.map(|c| c.revision))
            }
        };
        match self.blocking(&name, write).await? {
            Some(revision) => Ok(revision),
            None => self.inner.read(&name, |db| {
                let txn = db.begin_read()?;
                Ok(stored_revision(&txn.open_table(META)?)?)
            }),
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
    /// A redb failure accessing `key` as an [`Error`]; one that leaves the
    /// open file unusable marks it for reopening.
    fn fail(&self, key: &str, e: impl Into<redb::Error>) -> Error {
        self.note(failure(&self.path, key, e))
    }

    /// Marks the file for reopening if `e` left it unusable.
    fn note(&self, e: Error) -> Error {
        if poisons(&e) {
            self.broken.store(true, Ordering::Release);
        }
        e
    }

    /// The error of a call that found the file closed.
    fn closed(&self, key: &str) -> Error {
        Error::Io {
            path: self.path.clone(),
            key: key.to_owned(),
            error: std::io::Error::other("the file was closed by an earlier failure"),
        }
    }

    /// Reopens the file if an I/O failure made it unusable.
    fn ready(&self) -> Result<(), Error> {
        if !self.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        let _serial = lock(&self.write);
        if !self.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        self.reopen()
    }

    /// Closes the unusable file and opens it again (the caller holds
    /// `write`). The commits that were visible but not durable are gone
    /// with the old handle: their count is kept in `lost`, the stored
    /// revision is raised past every published event, and watches end.
    fn reopen(&self) -> Result<(), Error> {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            tracing::debug!(file = %self.path.display(), error = %e, "closing the failed state file");
        }
        let db = open_existing(&self.path)?;
        let published = self.hub.current();
        let (stored, _) = prepare(&self.path, &db, published)?;
        let committed = self.committed.load(Ordering::Acquire);
        let durable = self.durable.swap(committed, Ordering::AcqRel);
        if durable < committed {
            *lock(&self.lost) = (durable, committed);
        }
        if stored < published {
            self.hub.reset(published);
        }
        *slot = Some(db);
        self.broken.store(false, Ordering::Release);
        tracing::warn!(
            file = %self.path.display(),
            lost_commits = committed.saturating_sub(durable),
            lost_revisions = published - stored,
            "state file reopened after an I/O failure"
        );
        Ok(())
    }

    /// Runs the read `f` on the open file.
    fn read<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Result<T, Error> {
        self.ready()?;
        let slot = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = slot.as_ref().ok_or_else(|| self.closed(key))?;
        f(db).map_err(|e| self.fail(key, e))
    }

    /// Applies `ops` in one write transaction: checks every expectation,
    /// then writes, bumps the revision once per effective write, commits
    /// without an fsync ([`Inner::sync`] makes it durable) and publishes the
    /// events. `None`: nothing changed, the transaction is aborted.
    fn apply(&self, ops: Vec<Op>) -> Result<Option<Commit>, Error> {
        let name = ops
            .first()
            .map(|op| op.key().to_owned())
            .unwrap_or_default();
        self.ready()?;
        let _serial = lock(&self.write);
        let slot = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = slot.as_ref().ok_or_else(|| self.closed(&name))?;
        let mut txn = db.begin_write().map_err(|e| self.fail(&name, e))?;
        txn.set_durability(Durability::None)
            .map_err(|e| self.fail(&name, e))?;
        let events = match self.stage(&txn, ops) {
            Ok(events) if !events.is_empty() => events,
            other => {
                txn.abort().map_err(|e| self.fail(&name, e))?;
                return other.map(|_| None);
            }
        };
        let last = events.last().map(WatchEvent::revision).unwrap_or_default();
        {
            let mut meta = txn.open_table(META).map_err(|e| self.fail(&name, e))?;
            meta.insert(REVISION, last)
                .map_err(|e| self.fail(&name, e))?;
        }
        txn.commit().map_err(|e| self.fail(&name, e))?;
        let number = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        for event in events {
            self.hub.publish(event);
        }
        Ok(Some(Commit {
            revision: last,
            number,
        }))
    }

    /// [`Inner::apply`] and then a flush: durable on return, and writers at
    /// once share their flushes (group commit). A write that changed nothing
    /// still waits for the commits before it, but has none of its own that
    /// an I/O failure could have lost.
    fn apply_synced(&self, ops: Vec<Op>) -> Result<Option<u64>, Error> {
        match self.apply(ops)? {
            Some(c) => {
                self.sync_upto(c.number, true)?;
                Ok(Some(c.revision))
            }
            None => {
                self.sync_upto(self.committed.load(Ordering::Acquire), false)?;
                Ok(None)
            }
        }
    }

    /// [`KvStore::sync`]: makes every commit made before the call durable.
    /// It fails if one of them may have been lost to an I/O failure (it
    /// cannot tell the caller's own from the others).
    fn sync(&self) -> Result<(), Error> {
        self.sync_upto(self.committed.load(Ordering::Acquire), true)
    }

    /// Makes commits up to number `target` durable: one empty durable
    /// commit (redb persists the non-durable ones before it with it),
    /// shared by every caller that waited for the same flush. `strict`:
    /// fails if commit `target` may be among those lost to an I/O failure.
    fn sync_upto(&self, target: u64, strict: bool) -> Result<(), Error> {
        let check_lost = |target| {
            if strict {
                self.check_lost(target)
            } else {
                Ok(())
            }
        };
        check_lost(target)?;
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _flush = lock(&self.flushing);
        self.ready()?;
        // A reopen may have lost what this caller waits for; the flush just
        // finished may have covered it.
        check_lost(target)?;
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _serial = lock(&self.write);
        let upto = self.committed.load(Ordering::Acquire);
        let slot = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = slot.as_ref().ok_or_else(|| self.closed(SYNC))?;
        let txn = db.begin_write().map_err(|e| self.fail(SYNC, e))?;
        commit_durable(&self.path, SYNC, txn).map_err(|e| self.note(e))?;
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// [`Error::Io`] if commit number `target` may be among those lost to
    /// an I/O failure.
    fn check_lost(&self, target: u64) -> Result<(), Error> {
        let (from, to) = *lock(&self.lost);
        if from < target && target <= to {
            return Err(Error::Io {
                path: self.path.clone(),
                key: SYNC.to_owned(),
                error: std::io::Error::other(
                    "a write was lost: the file failed before it was made durable",
                ),
            });
        }
        Ok(())
    }

    /// Checks and writes `ops` inside `txn`; the events of the effective
    /// writes, with revisions counted on from the stored one.
    fn stage(&self, txn: &WriteTransaction, ops: Vec<Op>) -> Result<Vec<WatchEvent>, Error> {
        let name = ops
            .first()
            .map(|op| op.key().to_owned())
            .unwrap_or_default();
        let be = |e: redb::Error| self.fail(&name, e);
        let mut revision = {
            let meta = txn.open_table(META).map_err(|e| be(e.into()))?;
            stored_revision(&meta).map_err(|e| be(e.into()))?
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
                        .map_err(|e| self.fail(&key, e))?;
                    events.push(WatchEvent::Put {
                        key,
                        value,
                        revision,
                    });
                }
                Op::Delete { key, .. } => {
                    let removed = kv
                        .remove(key.as_str())
                        .map_err(|e| self.fail(&key, e))?
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
}

/// The key named in the errors of a flush: none (a flush writes no key).
const SYNC: &str = "";

#[async_trait]
impl KvStore for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, Error> {
        check_key(key)?;
        self.inner.read(key, |db| {
            let txn = db.begin_read()?;
            let kv = txn.open_table(KV)?;
            let got = kv.get(key)?;
            Ok(got.map(|g| {
                let (revision, value) = g.value();
                Versioned {
                    value: value.to_vec(),
                    revision,
                }
            }))
        })
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
        let dir = prefix.strip_suffix('/').unwrap_or(prefix);
        self.inner.read(prefix, |db| {
            let txn = db.begin_read()?;
            let revision = stored_revision(&txn.open_table(META)?)?;
            let kv = txn.open_table(KV)?;
            let mut entries = Vec::new();
            for item in kv.range(dir..)? {
                let (k, v) = item?;
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
        })
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
