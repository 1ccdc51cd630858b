//! The store's error type.

use crate::Expect;

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
    /// The backend failed (I/O, corruption, a lost connection).
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

    /// Whether this is an [`Error::Indeterminate`] write (the caller should
    /// re-read before deciding whether to write again).
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Indeterminate { .. })
    }
}

fn found(actual: Option<u64>) -> String {
    match actual {
        Some(r) => format!("revision {r}"),
        None => "absent".to_owned(),
    }
}
