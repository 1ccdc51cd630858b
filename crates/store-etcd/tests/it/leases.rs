//! Leases: a key bound to one goes when it is revoked or runs out.

use futures::StreamExt;
use std::time::{Duration, Instant};
use trellis_store::{Error, Expect, KvStore, WatchEvent};
use trellis_store_etcd::EtcdStore;
use trellis_store_etcd::testing::Etcd;

async fn store(etcd: &Etcd, ns: &str) -> EtcdStore {
    EtcdStore::connect(&etcd.urls(), Some(ns)).unwrap()
}

/// Polls until `key` is gone; returns how long that took.
async fn gone_within(s: &EtcdStore, key: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    while s.get(key).await.unwrap().is_some() {
        assert!(t.elapsed() < limit, "{key} still there after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn a_revoked_lease_takes_its_key_with_it() {
    let etcd = Etcd::start(1).await;
    let s = store(&etcd, "revoke").await;
    let lease = s.grant_lease(Duration::from_secs(30)).await.unwrap();
    let r = s
        .put_if_with_lease("leader", b"me".to_vec(), Expect::Absent, lease)
        .await
        .unwrap();
    // A second candidate finds the seat taken.
    let other = s.grant_lease(Duration::from_secs(30)).await.unwrap();
    let err = s
        .put_if_with_lease("leader", b"you".to_vec(), Expect::Absent, other)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { actual: Some(a), .. } if a == r),
        "{err}"
    );

    let mut w = s.watch("leader", r + 1).await.unwrap();
    s.revoke(lease).await.unwrap();
    assert_eq!(s.get("leader").await.unwrap(), None);
    let event = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    assert!(
        matches!(&event, Ok(Some(Ok(WatchEvent::Delete { key, .. }))) if key == "leader"),
        "{event:?}"
    );
    assert_eq!(
        s.keep_alive(lease).await.unwrap(),
        None,
        "a revoked lease lives"
    );
    s.revoke(lease).await.unwrap();
    // Now the other candidate gets the seat.
    s.put_if_with_lease("leader", b"you".to_vec(), Expect::Absent, other)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn a_lease_not_kept_alive_runs_out_and_one_kept_alive_does_not() {
    let etcd = Etcd::start(1).await;
    let s = store(&etcd, "ttl").await;
    let ttl = Duration::from_secs(2);
    let kept = s.grant_lease(ttl).await.unwrap();
    let dropped = s.grant_lease(ttl).await.unwrap();
    s.put_if_with_lease("kept", vec![], Expect::Absent, kept)
        .await
        .unwrap();
    s.put_if_with_lease("dropped", vec![], Expect::Absent, dropped)
        .await
        .unwrap();
    let renewed = s.keep_alive(kept).await.unwrap().expect("a live lease");
    assert!(renewed > Duration::ZERO && renewed <= ttl, "{renewed:?}");

    let keeper = {
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                s.keep_alive(kept).await.unwrap().expect("kept alive");
            }
        })
    };
    let took = gone_within(&s, "dropped", Duration::from_secs(10)).await;
    assert!(took >= Duration::from_secs(1), "gone after only {took:?}");
    tokio::time::sleep(ttl).await;
    assert!(
        s.get("kept").await.unwrap().is_some(),
        "a kept-alive lease ran out"
    );
    keeper.abort();

    assert_eq!(s.keep_alive(dropped).await.unwrap(), None);
    let err = s
        .put_if_with_lease("late", vec![], Expect::Absent, dropped)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lease not found"), "{err}");
}
