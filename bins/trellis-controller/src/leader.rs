//! Leader election among the replicas of an HA controller on etcd.
//!
//! One key, `controller/leader` (under the cluster's prefix), written with
//! [`Expect::Absent`] and bound to an etcd lease: the replica whose write
//! succeeds holds office; the others read who did, refuse calls naming it
//! (`trellis_cluster::Office`), and watch the key until it is deleted — its
//! holder revoked the lease on a clean stop, or stopped renewing it — then
//! try again.
//!
//! * **A dead leader is replaced within the lease's time to live**
//!   (`--leader-ttl`, 3 s by default): etcd deletes the key when the lease
//!   lapses, and the followers' watches see the delete at once.
//! * **A leader that cannot renew steps down before its lease can lapse**:
//!   it renews every third of the TTL, and gives up office as soon as half
//!   the TTL has passed without a successful renewal (or etcd says the lease
//!   is gone), so two replicas do not both think they lead for longer than
//!   a renewal's round trip. Even then the store's compare-and-swap guards
//!   every write: office decides who answers, not what is true.
//! * **A new term starts every node's lease afresh**
//!   (`Controller::take_office`): what another replica saw of renewals is not
//!   known here, and a change of leader must only ever delay a node's death.
//! * **A clean stop revokes the lease**, so a follower takes over at once
//!   instead of after the TTL.

use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use trellis_cluster::{Controller, Office};
use trellis_store::{Error, Expect, KvStore, WatchEvent};
use trellis_store_etcd::{EtcdStore, LeaseId};

/// The key whose holder leads, under the cluster's prefix.
pub const LEADER_KEY: &str = "controller/leader";

/// Who this replica is, as the others name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The replica's name.
    pub name: String,
    /// The address clients reach it at.
    pub url: String,
    /// The leader lease's time to live.
    pub ttl: Duration,
}

impl Candidate {
    fn value(&self) -> Vec<u8> {
        format!("{} {}", self.name, self.url).into_bytes()
    }
}

/// The leader a key's value names.
fn leader_of(value: &[u8]) -> Office {
    let text = String::from_utf8_lossy(value);
    match text.split_once(' ') {
        Some((name, url)) => Office::Follower {
            name: name.to_owned(),
            url: url.to_owned(),
        },
        None => Office::Follower {
            name: text.into_owned(),
            url: "(unknown address)".into(),
        },
    }
}

/// Campaigns, holds office and follows until `stop` turns true; `office`
/// says where this replica stands at every moment. A clean stop revokes the
/// lease of an office held.
pub async fn run(
    store: EtcdStore,
    me: Candidate,
    controller: Arc<Controller>,
    office: watch::Sender<Office>,
    mut stop: watch::Receiver<bool>,
) {
    let pause = (me.ttl / 6).max(Duration::from_millis(200));
    loop {
        if *stop.borrow() {
            return;
        }
        let lease = match store.grant_lease(me.ttl).await {
            Ok(l) => l,
            Err(e) => {
                office.send_replace(Office::Electing);
                tracing::warn!(error = %e, "controller election: cannot get an etcd lease");
                if wait(pause, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        match store
            .put_if_with_lease(LEADER_KEY, me.value(), Expect::Absent, lease)
            .await
        {
            Ok(_) => {
                controller.take_office();
                office.send_replace(Office::Leader);
                tracing::info!(name = %me.name, url = %me.url, %lease, "took office: this replica leads");
                let why = hold(&store, lease, me.ttl, &mut stop).await;
                office.send_replace(Office::Electing);
                match why {
                    None => {
                        let _ = store.revoke(lease).await;
                        tracing::info!("stopping: office given up (lease revoked)");
                        return;
                    }
                    Some(why) => {
                        tracing::warn!(%why, "gave up office");
                        let _ = store.revoke(lease).await;
                    }
                }
            }
            Err(Error::Conflict { .. }) => {
                let _ = store.revoke(lease).await;
                if follow(&store, &office, &mut stop).await {
                    return;
                }
            }
            Err(e) => {
                let _ = store.revoke(lease).await;
                office.send_replace(Office::Electing);
                tracing::warn!(error = %e, "controller election: cannot write the leader key");
                if wait(pause, &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `d`; whether `stop` turned true meanwhile.
async fn wait(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = sleep(d) => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    };
    stopped || *stop.borrow()
}

/// Renews `lease` every third of `ttl` until it is lost (`Some(why)`) or
/// `stop` turns true (`None`).
async fn hold(
    store: &EtcdStore,
    lease: LeaseId,
    ttl: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut renewed = Instant::now();
    loop {
        if wait(ttl / 3, stop).await {
            return None;
        }
        match tokio::time::timeout(ttl / 3, store.keep_alive(lease)).await {
            Ok(Ok(Some(_))) => renewed = Instant::now(),
            Ok(Ok(None)) => return Some(format!("etcd says lease {lease} has ended")),
            Ok(Err(e)) if renewed.elapsed() >= ttl / 2 => {
                return Some(format!(
                    "lease {lease} not renewed for {:?}: {e}",
                    renewed.elapsed()
                ));
            }
            Err(_) if renewed.elapsed() >= ttl / 2 => {
                return Some(format!(
                    "lease {lease} not renewed for {:?}",
                    renewed.elapsed()
                ));
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
}

/// Reads who leads and waits until the leader key is deleted (or the read
/// or watch fails); whether `stop` turned true meanwhile.
async fn follow(
    store: &EtcdStore,
    office: &watch::Sender<Office>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let current = match store.get(LEADER_KEY).await {
        Ok(Some(v)) => v,
        // Gone already: campaign again at once.
        Ok(None) => return *stop.borrow(),
        Err(e) => {
            office.send_replace(Office::Electing);
            tracing::warn!(error = %e, "controller election: cannot read the leader key");
            return wait(Duration::from_millis(500), stop).await;
        }
    };
    let leader = leader_of(&current.value);
    if *office.borrow() != leader {
        tracing::info!(leader = ?leader, "following");
    }
    office.send_replace(leader);
    let mut events = match store.watch(LEADER_KEY, current.revision + 1).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "controller election: cannot watch the leader key");
            return wait(Duration::from_millis(500), stop).await;
        }
    };
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = stop.wait_for(|s| *s) => return true,
        };
        match ev {
            Some(Ok(WatchEvent::Put { value, .. })) => {
                office.send_replace(leader_of(&value));
            }
            Some(Ok(WatchEvent::Delete { .. })) => {
                office.send_replace(Office::Electing);
                tracing::info!("the leader's key is gone: campaigning");
                return false;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "controller election: the leader key's watch ended");
                return false;
            }
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_leader_and_its_address() {
        let me = Candidate {
            name: "ctl-a".into(),
            url: "https://10.0.0.1:7443".into(),
            ttl: Duration::from_secs(3),
        };
        assert_eq!(
            leader_of(&me.value()),
            Office::Follower {
                name: "ctl-a".into(),
                url: "https://10.0.0.1:7443".into()
            }
        );
    }
}
