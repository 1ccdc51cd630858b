//! Leases: the seam for leader election.
//!
//! A lease is a timer kept by etcd: a key written with it is deleted when it
//! ends — revoked, or not kept alive for its TTL — so a key can stand for a
//! live process. Controller HA builds leader election on four calls:
//!
//! 1. [`EtcdStore::grant_lease`] once per process;
//! 2. [`EtcdStore::put_if_with_lease`] of the leader key with
//!    [`Expect::Absent`]: the one that succeeds leads; the others
//!    [`KvStore::get`](trellis_store::KvStore::get) the key (who leads) and
//!    [`KvStore::watch`](trellis_store::KvStore::watch) it until it is
//!    deleted, then try again;
//! 3. [`EtcdStore::keep_alive`] every third of the TTL; `None` means the
//!    lease is gone, with the leader key: stop leading at once;
//! 4. [`EtcdStore::revoke`] to step down (the key goes with it).
//!
//! They are inherent methods, not part of [`KvStore`](trellis_store::KvStore):
//! the embedded stores have a single owner and need no election, and the
//! trait stays what every backend can do. The loop (timers, when to step
//! down) belongs to the caller, on `tokio::time`, so it can be tested with
//! paused time.

use crate::endpoints::{REQUEST_TIMEOUT, Retry, request};
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest};
use crate::store::EtcdStore;
use futures::StreamExt;
use std::fmt;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};
use trellis_store::{Error, Expect, Op, check_key};

/// An etcd lease. Shown in hex, as `etcdctl lease list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(i64);

impl LeaseId {
    /// etcd's number for the lease.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl EtcdStore {
    /// A new lease that ends `ttl` after its last keep-alive (whole seconds,
    /// rounded up; etcd raises very short TTLs to its minimum, 1.5 × its
    /// election timeout, 1.5 s by default).
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, Error> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let req = LeaseGrantRequest {
            ttl: i64::try_from(secs.max(1)).unwrap_or(i64::MAX),
            id: 0,
        };
        let granted = self
            .inner
            .endpoints
            .call("lease", Retry::Idempotent, |ch| async move {
                let answer = lease(ch).lease_grant(request(req)).await?.into_inner();
                if answer.error.is_empty() {
                    Ok(answer.id)
                } else {
                    Err(Status::failed_precondition(answer.error))
                }
            })
            .await?;
        Ok(LeaseId(granted))
    }

    /// Renews `lease` once; returns its TTL from now, or `None` if it has
    /// already ended (expired or revoked: its keys are gone).
    pub async fn keep_alive(&self, lease_id: LeaseId) -> Result<Option<Duration>, Error> {
        let req = LeaseKeepAliveRequest { id: lease_id.0 };
        let ttl = self
            .inner
            .endpoints
            .call(&name(lease_id), Retry::Idempotent, |ch| async move {
                let renewed = tokio::time::timeout(REQUEST_TIMEOUT, keep_alive_on(ch, req));
                renewed.await.unwrap_or_else(|_| {
                    Err(Status::deadline_exceeded("no keep-alive answer in time"))
                })
            })
            .await?;
        Ok(u64::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .map(Duration::from_secs))
    }

    /// Ends `lease` now, deleting its keys. Revoking a lease that has ended
    /// already is no error.
    pub async fn revoke(&self, lease_id: LeaseId) -> Result<(), Error> {
        let req = LeaseRevokeRequest { id: lease_id.0 };
        self.inner
            .endpoints
            .call(&name(lease_id), Retry::Idempotent, |ch| async move {
                match lease(ch).lease_revoke(request(req)).await {
                    Err(s) if s.code() == Code::NotFound => Ok(()),
                    other => other.map(|_| ()),
                }
            })
            .await
    }

    /// [`KvStore::put_if`](trellis_store::KvStore::put_if), the key bound
    /// to `lease_id`: etcd deletes it when the lease ends (a watch sees a
    /// delete). A lease that has ended already fails the write (a
    /// [`Error::Backend`] saying `requested lease not found`).
    pub async fn put_if_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Expect,
        lease_id: LeaseId,
    ) -> Result<u64, Error> {
        check_key(key)?;
        let applied = self
            .write(&[Op::put(key, value, expected)], lease_id.0)
            .await?;
        Ok(applied.revision)
    }
}

/// A lease client on `ch`.
fn lease(ch: Channel) -> LeaseClient<Channel> {
    LeaseClient::new(ch)
}

/// A lease's name in errors.
fn name(lease_id: LeaseId) -> String {
    format!("lease {lease_id}")
}

/// One keep-alive round trip on its own stream: etcd's keep-alive is a
/// bidirectional stream, but one request and its answer is all a renewal is.
async fn keep_alive_on(ch: Channel, req: LeaseKeepAliveRequest) -> Result<i64, Status> {
    let requests = futures::stream::iter([req]).chain(futures::stream::pending());
    let mut answers = lease(ch)
        .lease_keep_alive(request(requests))
        .await?
        .into_inner();
    match answers.message().await? {
        Some(answer) => Ok(answer.ttl),
        None => Err(Status::unavailable("etcd closed the keep-alive stream")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_show_in_hex() {
        assert_eq!(
            LeaseId(0x694d_7e0a_11b2_c00d).to_string(),
            "694d7e0a11b2c00d"
        );
    }
}
