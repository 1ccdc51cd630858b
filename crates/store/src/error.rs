//! The store's error type.

use crate::Expect;
use std::path::PathBuf;

/// What can go wrong talking to a store. Messages are lowercase and name the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A conditional write found something other than what it expected.
    #[error("key {key:?}: expected {expected}, found {}", found(*.actual))]
    Conflict {
        /// The key written.
        key: String,
        /// What the write expected.
        expected: Expect,
        /// The key's actual revision (`None`: absent).
        actual: Option<u64>,
    },
    /// A watch asked for a revision older than the kept history.
    #[error(
        "watch on {prefix:?} from revision {requested}: history is compacted, \
         oldest revision kept is {oldest}"
    )]
    Compacted {
        /// The watched prefix.
        prefix: String,
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still available.
        oldest: u64,
    },
    /// A key (or prefix) that no backend accepts.
    #[error("key {key:?}: {reason}")]
    InvalidKey {
        /// The refused key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A write whose outcome is unknown: it was sent, but the answer was
    /// lost (the connection broke, the request timed out). It may or may not
    /// have been applied, so the caller must not retry it blindly: re-read
    /// the key and decide (a compare-and-swap that did apply now conflicts
    /// with its own write). Only networked backends (etcd) return it; a write
    /// known not to have been sent is retried by the backend, or fails with
    /// [`Error::Backend`].
    #[error("key {key:?}: the write may or may not have been applied: {source}")]
    Indeterminate {
        /// The key written (the first of a transaction).
        key: String,
        /// What was lost: the backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store's file could not be read or written: a full disk, a
    /// read-only filesystem, a failing device. Nothing of the failed call
    /// was applied, and the store tries its file again on the next call, so
    /// it recovers by itself once the cause is gone.
    #[error("state file {}{}: {error}", path.display(), on_key(key))]
    Io {
        /// The store's file.
        path: PathBuf,
        /// The key (or prefix) being accessed.
        key: String,
        /// What the operating system said. Part of the message (a client
        /// sees only that), so not a `source` too: it would print twice.
        error: std::io::Error,
    },
    /// The store's file is damaged, or is not a store at all. It is left
    /// exactly as it was found: opening never repairs it by dropping
    /// commits, and never puts an empty store in its place.
    #[error(
        "state file {} is corrupt or unreadable ({reason}); it was left as it is: \
         restore it from a backup, or move it aside to start with an empty store \
         (which forgets every network and endpoint it records)",
        path.display()
    )]
    Corrupt {
        /// The store's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend failed (a lost connection, an unexpected backend error).
    #[error("key {key:?}: store backend failed: {source}")]
    Backend {
        /// The key (or prefix) being accessed.
        key: String,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A [`Error::Backend`] for `key` caused by `source`.
    pub fn backend(key: &str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Backend {
            key: key.to_owned(),
            source: source.into(),
        }
    }

    /// Whether this is a CAS conflict (the caller should re-read and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// The kind of the operating-system error behind an [`Error::Io`]
    /// (`StorageFull`, `ReadOnlyFilesystem`, …); `None` for other errors.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io { error, .. } => Some(error.kind()),
            _ => None,
        }
    }

    /// Whether this is an [`Error::Indeterminate`] write (the caller should
    /// re-read before deciding whether to write again).
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Indeterminate { .. })
    }
}

/// ` (key "k")`, or nothing for a call on no key (opening the file).
fn on_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" (key {key:?})")
    }
}

fn found(actual: Option<u64>) -> String {
    match actual {
        Some(r) => format!("revision {r}"),
        None => "absent".to_owned(),
    }
}
