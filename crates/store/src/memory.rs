//! [`MemoryStore`]: a `BTreeMap` behind a mutex.

use crate::hub::Hub;
use crate::{
    Error, Expect, KvStore, Listing, Versioned, WatchEvent, WatchStream, check_expect, check_key,
    key_matches,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many events a store keeps for watches from a past revision by default.
pub const DEFAULT_HISTORY: usize = 10_000;

/// An in-memory store: for tests and for tools that need no durability.
///
/// Cloning gives another handle on the same data. Every operation takes one
/// short `std::sync::Mutex` section and never awaits while holding it.
#[derive(Clone)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Data {
    revision: u64,
    map: BTreeMap<String, Versioned>,
}

impl MemoryStore {
    /// An empty store keeping [`DEFAULT_HISTORY`] events for watches.
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }

    /// An empty store keeping the last `events` events for watches.
    pub fn with_history(events: usize) -> Self {
        Self {
            data: Arc::default(),
            hub: Hub::new(0, events),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl KvStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, Error> {
        check_key(key)?;
        Ok(self.lock().map.get(key).cloned())
    }

    async fn put_if(&self, key: &str, value: Vec<u8>, expected: Expect) -> Result<u64, Error> {
        check_key(key)?;
        let mut data = self.lock();
        check_expect(key, expected, data.map.get(key).map(|v| v.revision))?;
        data.revision += 1;
        let revision = data.revision;
        let versioned = Versioned {
            value: value.clone(),
            revision,
        };
        data.map.insert(key.to_owned(), versioned);
        // Published under the data lock so that events enter the history in
        // revision order.
        self.hub.publish(WatchEvent::Put {
            key: key.to_owned(),
            value,
            revision,
        });
        Ok(revision)
    }

    async fn delete_if(&self, key: &str, expected: Expect) -> Result<Option<u64>, Error> {
        check_key(key)?;
        let mut data = self.lock();
        let actual = data.map.get(key).map(|v| v.revision);
        check_expect(key, expected, actual)?;
        if actual.is_none() {
            return Ok(None);
        }
        data.map.remove(key);
        data.revision += 1;
        let revision = data.revision;
        self.hub.publish(WatchEvent::Delete {
            key: key.to_owned(),
            revision,
        });
        Ok(Some(revision))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, Error> {
        let dir = prefix.strip_suffix('/').unwrap_or(prefix);
        let data = self.lock();
        let entries = data
            .map
            .range(dir.to_owned()..)
            .take_while(|(k, _)| k.starts_with(dir))
            .filter(|(k, _)| key_matches(prefix, k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Listing {
            revision: data.revision,
            entries,
        })
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, Error> {
        self.hub.watch(prefix, from_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_passes_the_conformance_suite() {
        crate::conformance::run_all(MemoryStore::new).await;
    }

    #[tokio::test]
    async fn watch_from_a_compacted_revision_fails_clearly() {
        let store = MemoryStore::with_history(2);
        for i in 0..5u8 {
            store.put_if("k", vec![i], Expect::Any).await.unwrap();
        }
        let err = match store.watch("k", 1).await {
            Err(e) => e,
            Ok(_) => panic!("watch from a compacted revision succeeded"),
        };
        assert!(
            matches!(
                err,
                Error::Compacted {
                    requested: 1,
                    oldest: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("compacted"), "{err}");
        let _live = store.watch("k", 4).await.unwrap();
    }
}
