//! [`InstrumentedStore`] (feature `mock`): a [`MemoryStore`] that counts what
//! is asked of it and can refuse writes under a prefix — for unit tests that
//! assert how many reads or commits an operation costs, or how it undoes a
//! failed commit.

use crate::{Error, Expect, KvStore, Listing, MemoryStore, Op, Versioned, WatchStream};
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A memory store that counts `get`s, `list`s, `watch`es and commits (each
/// `put_if`, `delete_if` or `txn` call is one), and fails every commit that touches a
/// key under [`InstrumentedStore::refusing`]'s prefix with a backend error.
#[derive(Default)]
pub struct InstrumentedStore {
    inner: MemoryStore,
    refuse: Option<String>,
    latency: Option<std::time::Duration>,
    lose: std::sync::atomic::AtomicBool,
    gets: AtomicUsize,
    lists: AtomicUsize,
    watches: AtomicUsize,
    commits: AtomicUsize,
}

impl InstrumentedStore {
    /// A store that fails every commit touching a key under `prefix`
    /// ("disk full"), changing nothing.
    pub fn refusing(prefix: &str) -> Self {
        InstrumentedStore {
            refuse: Some(prefix.to_owned()),
            ..InstrumentedStore::default()
        }
    }

    /// A store whose every call takes `latency` first (a round trip to a
    /// networked store such as etcd), so that concurrent callers
    /// interleave the way they do there.
    pub fn with_latency(latency: std::time::Duration) -> Self {
        InstrumentedStore {
            latency: Some(latency),
            ..InstrumentedStore::default()
        }
    }

    /// Makes the next transaction apply but answer
    /// [`Error::Indeterminate`], as a networked store does when the answer
    /// is lost on the way back.
    pub fn lose_next_outcome(&self) {
        self.lose.store(true, Ordering::SeqCst);
    }

    async fn round_trip(&self) {
        if let Some(d) = self.latency {
            tokio::time::sleep(d).await;
        }
    }

    /// `get` calls so far.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::Relaxed)
    }

    /// `list` calls so far: a read of every key under a prefix, which a
    /// count of `get`s alone does not show.
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::Relaxed)
    }

    /// `watch` calls so far (refused ones included): each is one watch
    /// stream on a networked store.
    pub fn watches(&self) -> usize {
        self.watches.load(Ordering::Relaxed)
    }

    /// Commit calls so far (refused ones included).
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::Relaxed)
    }

    fn commit<'a>(&self, mut keys: impl Iterator<Item = &'a str>) -> Result<(), Error> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let Some(prefix) = &self.refuse else {
            return Ok(());
        };
        match keys.find(|k| crate::key_matches(prefix, k)) {
            Some(key) => Err(Error::backend(key, std::io::Error::other("disk full"))),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl KvStore for InstrumentedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, Error> {
        self.round_trip().await;
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }

    async fn put_if(&self, key: &str, value: Vec<u8>, expected: Expect) -> Result<u64, Error> {
        self.round_trip().await;
        self.commit(std::iter::once(key))?;
        self.inner.put_if(key, value, expected).await
    }

    async fn delete_if(&self, key: &str, expected: Expect) -> Result<Option<u64>, Error> {
        self.round_trip().await;
        self.commit(std::iter::once(key))?;
        self.inner.delete_if(key, expected).await
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<u64, Error> {
        self.round_trip().await;
        self.commit(ops.iter().map(Op::key))?;
        let first = ops.first().map(|o| o.key().to_owned()).unwrap_or_default();
        let rev = self.inner.txn(ops).await?;
        if self.lose.swap(false, Ordering::SeqCst) {
            return Err(Error::Indeterminate {
                key: first,
                source: "the answer was lost (test)".into(),
            });
        }
        Ok(rev)
    }

    async fn list(&self, prefix: &str) -> Result<Listing, Error> {
        self.round_trip().await;
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix).await
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, Error> {
        self.round_trip().await;
        self.watches.fetch_add(1, Ordering::Relaxed);
        self.inner.watch(prefix, from_revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_reads_and_commits_and_refuses_only_its_prefix() {
        let s = InstrumentedStore::refusing("no");
        s.put_if("yes/a", b"1".to_vec(), Expect::Absent)
            .await
            .unwrap();
        s.get("yes/a").await.unwrap();
        let err = s
            .txn(vec![
                Op::put("yes/b", b"2".to_vec(), Expect::Absent),
                Op::put("no/c", b"3".to_vec(), Expect::Absent),
            ])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("\"no/c\"") && err.to_string().contains("disk full"),
            "{err}"
        );
        assert_eq!(
            s.get("yes/b").await.unwrap(),
            None,
            "a refused commit wrote"
        );
        s.delete_if("yes/a", Expect::Any).await.unwrap();
        s.put_if("nope", b"4".to_vec(), Expect::Absent)
            .await
            .unwrap();
        assert!(s.list("yes").await.unwrap().entries.is_empty());
        drop(s.watch("yes", 0).await.unwrap());
        assert_eq!(
            (s.gets(), s.lists(), s.watches(), s.commits()),
            (2, 1, 1, 4)
        );
    }
}
