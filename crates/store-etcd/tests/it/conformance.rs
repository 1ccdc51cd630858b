//! The store conformance suite, and what only a shared etcd can get wrong.

use std::sync::atomic::{AtomicUsize, Ordering};
use trellis_store::{Error, Expect, KvStore, Op, WatchEvent};
use trellis_store_etcd::testing::Etcd;
use trellis_store_etcd::{EtcdStore, MAX_TXN_OPS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn etcd_store_passes_the_conformance_suite() {
    let etcd = Etcd::start(1).await;
    let urls = etcd.urls();
    let n = AtomicUsize::new(0);
    // One etcd, a fresh namespace per check: each check sees an empty store.
    trellis_store::conformance::run_all(|| {
        let ns = format!("conformance/{}", n.fetch_add(1, Ordering::Relaxed));
        EtcdStore::connect(&urls, Some(&ns)).unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn namespaces_and_siblings_stay_apart() {
    let etcd = Etcd::start(1).await;
    let a = EtcdStore::connect(&etcd.urls(), Some("ns/a")).unwrap();
    let b = EtcdStore::connect(&etcd.urls(), Some("ns/b")).unwrap();
    let mut watch = a.watch("s/x", 0).await.unwrap();
    // Siblings of s/x that fall inside etcd's range [s/x, s/x0).
    for k in ["s/x", "s/x-1", "s/x.y", "s/x/z", "s/x0"] {
        a.put_if(k, k.as_bytes().to_vec(), Expect::Absent)
            .await
            .unwrap();
    }
    b.put_if("s/x/other", vec![], Expect::Absent).await.unwrap();
    let keys: Vec<String> = a
        .list("s/x")
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["s/x", "s/x/z"]);
    assert_eq!(b.list("").await.unwrap().entries.len(), 1);
    assert_eq!(a.get("s/x/other").await.unwrap(), None);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures::StreamExt::next(&mut watch),
        )
        .await
        {
            Ok(Some(Ok(e))) => seen.push(e.key().to_owned()),
            other => panic!("expected a watch event, got {other:?}"),
        }
    }
    assert_eq!(seen, ["s/x", "s/x/z"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn a_transaction_may_have_as_many_ops_as_etcd_takes_and_no_more() {
    let etcd = Etcd::start(1).await;
    let s = EtcdStore::connect(&etcd.urls(), Some("limit")).unwrap();
    let ops = |n: usize| -> Vec<Op> {
        (0..n)
            .map(|i| Op::put(format!("k/{i}"), vec![], Expect::Absent))
            .collect()
    };
    let rev = s.txn(ops(MAX_TXN_OPS)).await.unwrap();
    let listing = s.list("k").await.unwrap();
    assert_eq!(listing.entries.len(), MAX_TXN_OPS);
    assert!(
        listing.entries.iter().all(|(_, v)| v.revision == rev),
        "one revision"
    );
    let err = s.txn(ops(MAX_TXN_OPS + 1)).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("limit of 128 ops"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn revision_zero_is_never_a_match() {
    let etcd = Etcd::start(1).await;
    let s = EtcdStore::connect(&etcd.urls(), Some("zero")).unwrap();
    // etcd reports an absent key's mod_revision as 0.
    let err = s
        .put_if("k", vec![], Expect::Revision(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { actual: None, .. }), "{err}");
    let r = s.put_if("k", vec![1], Expect::Absent).await.unwrap();
    let mut w = s.watch("k", r).await.unwrap();
    let first = futures::StreamExt::next(&mut w).await.unwrap().unwrap();
    assert_eq!(
        first,
        WatchEvent::Put {
            key: "k".into(),
            value: vec![1],
            revision: r
        }
    );
}
