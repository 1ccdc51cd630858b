//! [`EtcdStore`]: the handle, and [`KvStore`] over etcd's KV service.

use crate::endpoints::{Endpoints, MAX_MESSAGE, Retry, request};
use crate::keys::{Namespace, check_ops};
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::{CompactionRequest, RangeRequest, RangeResponse};
use crate::txn::{self, Applied};
use async_trait::async_trait;
use std::sync::Arc;
use tonic::transport::Channel;
use trellis_store::{Error, Expect, KvStore, Listing, Op, Versioned, WatchStream, check_key};

/// How many keys one page of a listing asks for.
const PAGE: i64 = 512;

/// A [`KvStore`] kept in an etcd cluster.
///
/// Cloning gives another handle on the same connections. Several stores
/// (trellis clusters, tests) share one etcd by each taking a namespace; a
/// store sees only its own keys, but revisions are etcd's, shared by all.
/// Beyond the trait, it offers leases ([`EtcdStore::grant_lease`] and the
/// rest, the seam for leader election) and [`EtcdStore::compact`].
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) endpoints: Endpoints,
    pub(crate) ns: Namespace,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints.urls())
            .field("namespace", &self.inner.ns)
            .finish()
    }
}

impl EtcdStore {
    /// A store on the etcd cluster whose members are `endpoints`
    /// (`http://host:port` or `host:port`, one or more), keeping its keys
    /// under `prefix/` (a key-shaped path, see [`check_key`]) or, with
    /// `None`, at the top of etcd's key space.
    ///
    /// Connections are made on first use, so this fails only on an address
    /// that cannot be one or a malformed prefix, never because a member is
    /// down. Must be called inside a tokio runtime.
    pub fn connect(endpoints: &[String], prefix: Option<&str>) -> Result<Self, Error> {
        let ns = Namespace::new(prefix)?;
        let endpoints = Endpoints::new(endpoints)?;
        Ok(Self {
            inner: Arc::new(Inner { endpoints, ns }),
        })
    }

    /// Discards etcd's history before `revision` (for every namespace: it is
    /// etcd's). Watches from an earlier revision then fail with
    /// [`Error::Compacted`]. etcd keeps every revision until compacted: run
    /// it with `--auto-compaction-retention`, or call this.
    pub async fn compact(&self, revision: u64) -> Result<(), Error> {
        let req = CompactionRequest {
            revision: i64::try_from(revision).unwrap_or(i64::MAX),
            physical: false,
        };
        self.inner
            .endpoints
            .call("", Retry::Idempotent, |ch| async move {
                kv(ch).compact(request(req)).await.map(|_| ())
            })
            .await
    }

    /// Applies `ops` as one etcd transaction, puts carrying `lease`.
    pub(crate) async fn write(&self, ops: &[Op], lease: i64) -> Result<Applied, Error> {
        let req = txn::request(&self.inner.ns, ops, lease);
        // An empty transaction is a read of the revision.
        let retry = if ops.is_empty() {
            Retry::Idempotent
        } else {
            Retry::Write
        };
        let name = ops.first().map_or("", |op| op.key());
        let answer = self
            .inner
            .endpoints
            .call(name, retry, |ch| {
                let req = req.clone();
                async move {
                    kv(ch)
                        .txn(request(req))
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        txn::outcome(ops, answer)
    }

    /// One range read, named `name` in errors.
    async fn range(&self, name: &str, req: RangeRequest) -> Result<RangeResponse, Error> {
        self.inner
            .endpoints
            .call(name, Retry::Idempotent, |ch| {
                let req = req.clone();
                async move {
                    kv(ch)
                        .range(request(req))
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await
    }
}

/// A KV client on `ch` that takes etcd's large answers.
pub(crate) fn kv(ch: Channel) -> KvClient<Channel> {
    KvClient::new(ch).max_decoding_message_size(MAX_MESSAGE)
}

/// A key's revision as etcd reports it.
pub(crate) fn rev(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, Error> {
        check_key(key)?;
        let req = RangeRequest {
            key: self.inner.ns.key(key),
            ..Default::default()
        };
        let answer = self.range(key, req).await?;
        Ok(answer.kvs.into_iter().next().map(|kv| Versioned {
            value: kv.value,
            revision: rev(kv.mod_revision),
        }))
    }

    async fn put_if(&self, key: &str, value: Vec<u8>, expected: Expect) -> Result<u64, Error> {
        check_key(key)?;
        let applied = self.write(&[Op::put(key, value, expected)], 0).await?;
        Ok(applied.revision)
    }

    async fn delete_if(&self, key: &str, expected: Expect) -> Result<Option<u64>, Error> {
        check_key(key)?;
        let applied = self.write(&[Op::delete(key, expected)], 0).await?;
        Ok(applied.deleted[0].then_some(applied.revision))
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<u64, Error> {
        check_ops(&ops)?;
        Ok(self.write(&ops, 0).await?.revision)
    }

    /// Pages of 512 keys, every page read at the first page's revision,
    /// so the listing is one snapshot however long it is.
    async fn list(&self, prefix: &str) -> Result<Listing, Error> {
        let (mut key, range_end) = self.inner.ns.range(prefix);
        let mut listing = Listing::default();
        loop {
            let req = RangeRequest {
                key,
                range_end: range_end.clone(),
                limit: PAGE,
                revision: i64::try_from(listing.revision).unwrap_or(0),
                ..Default::default()
            };
            let page = self.range(prefix, req).await?;
            if listing.revision == 0 {
                listing.revision = txn::revision(page.header);
            }
            let Some(last) = page.kvs.last() else { break };
            // The next page starts just after the last key of this one.
            key = [last.key.as_slice(), &[0]].concat();
            for kv in page.kvs {
                if let Some(k) = self.inner.ns.matching(prefix, &kv.key) {
                    let v = Versioned {
                        value: kv.value,
                        revision: rev(kv.mod_revision),
                    };
                    listing.entries.push((k, v));
                }
            }
            if !page.more {
                break;
            }
        }
        Ok(listing)
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<WatchStream, Error> {
        crate::watch::watch(Arc::clone(&self.inner), prefix, from_revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connecting_outside_a_runtime_is_an_error_not_a_panic() {
        let err = EtcdStore::connect(&["127.0.0.1:2379".into()], None).unwrap_err();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }

    #[tokio::test]
    async fn a_store_shows_where_it_keeps_its_keys() {
        let s = EtcdStore::connect(&["127.0.0.1:2379".into()], Some("t/1")).unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("127.0.0.1:2379") && shown.contains("\"t/1/\""),
            "{shown}"
        );
        assert!(EtcdStore::connect(&["127.0.0.1:2379".into()], Some("/bad")).is_err());
    }
}
