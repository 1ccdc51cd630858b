//! One key-value-with-compare-and-swap trait, [`KvStore`], and its backends.
//!
//! Design decisions:
//!
//! * **Compare-and-swap is the only way to write.** Every write names what it
//!   expects to find ([`Expect::Absent`], [`Expect::Revision`] or, deliberately,
//!   [`Expect::Any`]). Callers read a record with its revision, change it, and
//!   write it back with `put_if(key, value, Expect::Revision(rev))`; a
//!   concurrent writer makes that fail with [`Error::Conflict`] and the caller
//!   retries. This is what lets two IPAM allocators share a store without ever
//!   handing out one address twice, and it maps one-to-one onto an etcd
//!   transaction (`mod_revision == rev` / `create_revision == 0`).
//! * **Revisions are store-global** and increase by one with every put and every
//!   delete that removed something (like etcd's revision). A key's revision is
//!   the store revision of its last write. So a caller can [`KvStore::list`] a
//!   prefix, learn the store revision the listing was taken at, and
//!   [`KvStore::watch`] from the next revision without missing or repeating an
//!   event.
//! * **Keys are `String`s holding slash-separated paths** (`ipam/blocks/p/…`).
//!   A prefix selects a *subtree*, not a string prefix: `a/b` matches `a/b` and
//!   `a/b/c`, never the sibling `a/bc` (see [`key_matches`]). Values are opaque
//!   bytes; callers choose their encoding.
//! * **Several writes commit as one with [`KvStore::txn`].** Each write of a
//!   transaction names its own expectation; all are checked against the
//!   store as it was before, and either all are applied or none. IPAM uses it
//!   to take an address and record the endpoint that holds it in one commit
//!   (one fsync with redb), which maps onto one etcd `Txn`.
//! * **Watches replay a bounded history.** Each backend keeps the most recent
//!   events in memory; a watch from a revision older than that window fails
//!   with [`Error::Compacted`] (as it does on etcd after compaction), and the
//!   caller re-lists and watches from the listing's revision.
//!
//! Backends: [`MemoryStore`] (tests, single-process tools) and [`RedbStore`]
//! (embedded, crash-safe, one file owned by one process). An etcd backend will
//! join them and must pass the same `conformance` suite (feature
//! `conformance`). With feature `mock`, `MockKvStore` and
//! `InstrumentedStore` (a counting memory store) are available to downstream
//! unit tests.

mod error;
mod hub;
mod memory;
mod redb_file;
mod redb_store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "mock"))]
mod instrumented;

#[cfg(any(test, feature = "mock"))]
pub use instrumented::InstrumentedStore;

pub use error::Error;
pub use memory::{DEFAULT_HISTORY, MemoryStore};
pub use redb_store::RedbStore;

use async_trait::async_trait;
use futures::Stream;
use std::fmt;
use std::pin::Pin;

/// What a conditional write expects to find under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key exists and was last written at exactly this revision.
    Revision(u64),
    /// Anything: the write is unconditional.
    Any,
}

impl Expect {
    /// Whether a key whose current revision is `actual` (`None`: absent) meets
    /// this expectation.
    pub fn is_met_by(self, actual: Option<u64>) -> bool {
        match self {
            Expect::Absent => actual.is_none(),
            Expect::Revision(r) => actual == Some(r),
            Expect::Any => true,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Absent => f.write_str("absent"),
            Expect::Revision(r) => write!(f, "revision {r}"),
            Expect::Any => f.write_str("any"),
        }
    }
}

/// One write of a transaction ([`KvStore::txn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write `value` under `key` if `expected` holds.
    Put {
        /// The key written.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// What the key must hold before the transaction.
        expected: Expect,
    },
    /// Delete `key` if `expected` holds (an absent key with [`Expect::Any`]
    /// or [`Expect::Absent`] is no change, as for [`KvStore::delete_if`]).
    Delete {
        /// The key deleted.
        key: String,
        /// What the key must hold before the transaction.
        expected: Expect,
    },
}

impl Op {
    /// A conditional put.
    pub fn put(key: impl Into<String>, value: Vec<u8>, expected: Expect) -> Self {
        Op::Put {
            key: key.into(),
            value,
            expected,
        }
    }

    /// A conditional delete.
    pub fn delete(key: impl Into<String>, expected: Expect) -> Self {
        Op::Delete {
            key: key.into(),
            expected,
        }
    }

    /// The key the write is about.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// What the key must hold before the transaction.
    pub fn expected(&self) -> Expect {
        match self {
            Op::Put { expected, .. } | Op::Delete { expected, .. } => *expected,
        }
    }
}

/// A value with the store revision at which it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The store revision of the last write to this key.
    pub revision: u64,
}

/// The result of [`KvStore::list`]: matching entries in key order, and the
/// store revision the listing reflects (watch from `revision + 1` to follow on).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// The store revision at the time of the listing.
    pub revision: u64,
    /// Matching keys and their values, sorted by key.
    pub entries: Vec<(String, Versioned)>,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// `key` was written with `value` at `revision`.
    Put {
        /// The key written.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The store revision of the write.
        revision: u64,
    },
    /// `key` was deleted at `revision`.
    Delete {
        /// The key deleted.
        key: String,
        /// The store revision of the delete.
        revision: u64,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The store revision of the event.
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Put { revision, .. } | WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// The events of a watch, in revision order. An `Err` item ends the stream
/// (e.g. [`Error::Compacted`] when the watcher fell behind the history window).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Error>> + Send>>;

/// A key-value store with compare-and-swap writes, prefix listing and watches.
///
/// Object-safe: hold it as `Arc<dyn KvStore>`. Keys are validated by
/// [`check_key`]; every backend refuses the same keys.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The value under `key` and its revision, or `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, Error>;

    /// Writes `value` under `key` if `expected` holds; returns the new revision.
    /// Otherwise fails with [`Error::Conflict`] and changes nothing.
    async fn put_if(&self, key: &str, value: Vec<u8>, expected: Expect) -> Result<u64, Error>;

    /// Deletes `key` if `expected` holds. Returns the revision of the delete, or
    /// `None` when the key was already absent (allowed for [`Expect::Any`] and
    /// [`Expect::Absent`], so deletes can be idempotent; [`Expect::Revision`]
    /// on an absent key is a conflict).
    async fn delete_if(&self, key: &str, expected: Expect) -> Result<Option<u64>, Error>;

    /// Applies `ops` as one transaction: every expectation is checked against
    /// the store as it was before the transaction; if one fails, the first
    /// failing op's key is named in [`Error::Conflict`] and nothing changes.
    /// Otherwise every op is applied and all are committed together (one
    /// fsync with redb). Returns the store revision after the transaction.
    ///
    /// Each effective write is one watch event, in op order. Memory and redb
    /// give a transaction's writes consecutive revisions (etcd gives them all
    /// one); either way they are all `<=` the returned revision and `>` any
    /// earlier one. A key may appear only once ([`Error::InvalidKey`]). An
    /// empty transaction, or one whose only ops delete absent keys, changes
    /// nothing and returns the current revision.
    async fn txn(&self, ops: Vec<Op>) -> Result<u64, Error>;

    /// [`KvStore::txn`], but it may return before the transaction is
    /// durable: it is visible to every reader at once, and it survives a
    /// crash only once a [`KvStore::sync`] that started after it returns
    /// (a crash before then loses it whole, never half of it). What lets a
    /// caller overlap a commit's fsync with other work (an attach: with the
    /// kernel's). Stores without a cheaper path commit durably.
    async fn txn_unsynced(&self, ops: Vec<Op>) -> Result<u64, Error> {
        self.txn(ops).await
    }

    /// Makes every write that returned before this call durable. Calls made
    /// at once share one flush (group commit). A no-op where every write is
    /// durable when it returns.
    async fn sync(&self) -> Result<(), Error> {
        Ok(())
    }

    /// All entries under `prefix` (a subtree, see [`key_matches`]); an empty
    /// prefix lists everything.
    async fn list(&self, prefix: &str) -> Result<Listing, Error>;

    /// Events under `prefix` with revision `>= from_revision`, then live ones.
    /// `from_revision == 0` means "from now on". Fails with
    /// [`Error::Compacted`] when that revision is no longer in the history.
    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, Error>;
}

/// Whether `key` lies in the subtree `prefix`: the empty prefix matches every
/// key; `a/b` matches `a/b` itself and `a/b/c`, never the sibling `a/bc`. A
/// trailing `/` on the prefix is ignored.
pub fn key_matches(prefix: &str, key: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let dir = prefix.strip_suffix('/').unwrap_or(prefix);
    match key.strip_prefix(dir) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Checks a key: non-empty, no leading or trailing `/`, no empty segment
/// (`a//b`), no NUL.
pub fn check_key(key: &str) -> Result<(), Error> {
    let reason = if key.is_empty() {
        "key is empty"
    } else if key.starts_with('/') || key.ends_with('/') {
        "key may not start or end with '/'"
    } else if key.contains("//") {
        "key may not contain an empty segment"
    } else if key.contains('\0') {
        "key may not contain NUL"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}

/// Checks every key of a transaction, and that none appears twice.
pub(crate) fn check_ops(ops: &[Op]) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        check_key(op.key())?;
        if !seen.insert(op.key()) {
            return Err(Error::InvalidKey {
                key: op.key().to_owned(),
                reason: "key appears twice in one transaction",
            });
        }
    }
    Ok(())
}

/// Checks a CAS expectation against the key's current revision.
pub(crate) fn check_expect(key: &str, expected: Expect, actual: Option<u64>) -> Result<(), Error> {
    if expected.is_met_by(actual) {
        Ok(())
    } else {
        Err(Error::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_subtrees() {
        assert!(key_matches("", "a"));
        assert!(key_matches("a/b", "a/b"));
        assert!(key_matches("a/b", "a/b/c"));
        assert!(key_matches("a/b/", "a/b/c"));
        assert!(!key_matches("a/b", "a/bc"));
        assert!(!key_matches("a/b/", "a/bc/d"));
        assert!(!key_matches("a/b", "a"));
    }

    #[test]
    fn bad_keys_are_refused_by_name() {
        for bad in ["", "/a", "a/", "a//b", "a\0b"] {
            let err = check_key(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidKey { .. }), "{bad:?}");
        }
        check_key("ipam/blocks/p/10.0.0.0-26").unwrap();
    }

    #[test]
    fn conflict_message_names_the_key() {
        let err = check_expect("a/b", Expect::Revision(3), Some(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"a/b\": expected revision 3, found revision 5"
        );
        let err = check_expect("a/b", Expect::Absent, Some(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"a/b\": expected absent, found revision 5"
        );
        let err = check_expect("a/b", Expect::Revision(1), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"a/b\": expected revision 1, found absent"
        );
    }
}

#[cfg(test)]
mod redb_fault_tests;
