//! [`MemoryStore`]: a `BTreeMap` behind a mutex.

use crate::hub::Hub;
use crate::{
    Error, Expect, KvStore, Listing, Op, Versioned, WatchEvent, WatchStream, check_expect,
    check_key, check_ops, key_matches,
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

    /// Checks every expectation, then applies every op, under one lock;
    /// returns the last revision taken (`None`: nothing changed). Events are
    /// published under the data lock so that they enter the history in
    /// revision order.
    fn apply(&self, ops: Vec<Op>) -> Result<Option<u64>, Error> {
        let mut data = self.lock();
        for op in &ops {
            let actual = data.map.get(op.key()).map(|v| v.revision);
            check_expect(op.key(), op.expected(), actual)?;
        }
        let mut last = None;
        for op in ops {
            let event = match op {
                Op::Put { key, value, .. } => {
                    let revision = data.revision + 1;
                    let versioned = Versioned {
                        value: value.clone(),
                        revision,
                    };
                    data.map.insert(key.clone(), versioned);
                    WatchEvent::Put {
                        key,
                        value,
                        revision,
                    }
                }
                Op::Delete { key, .. } => {
                    if data.map.remove(&key).is_none() {
                        continue;
                    }
                    let revision = data.revision + 1;
                    WatchEvent::Delete { key, revision }
                }
            };
            data.revision = event.revision();
            last = Some(data.revision);
            self.hub.publish(event);
        }
        Ok(last)
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
        let op = Op::put(key, value, expected);
        self.apply(vec![op])?
            .ok_or_else(|| Error::backend(key, "put changed nothing"))
    }

    async fn delete_if(&self, key: &str, expected: Expect) -> Result<Option<u64>, Error> {
        check_key(key)?;
        self.apply(vec![Op::delete(key, expected)])
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<u64, Error> {
        check_ops(&ops)?;
        match self.apply(ops)? {
            Some(revision) => Ok(revision),
            None => Ok(self.lock().revision),
        }
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
