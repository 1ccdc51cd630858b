//! A watch from before etcd's compaction fails with `Error::Compacted`.

use futures::StreamExt;
use trellis_store::{Error, Expect, KvStore};
use trellis_store_etcd::EtcdStore;
use trellis_store_etcd::testing::Etcd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "etcd"),
    ignore = "needs Debian's etcd-server: the etcd tier, scripts/test turns it on"
)]
async fn a_watch_from_a_compacted_revision_fails_clearly() {
    let etcd = Etcd::start(1).await;
    let s = EtcdStore::connect(&etcd.urls(), Some("compaction")).unwrap();
    let mut revs = Vec::new();
    for i in 0..5u8 {
        revs.push(s.put_if("c/k", vec![i], Expect::Any).await.unwrap());
    }
    s.compact(revs[3]).await.unwrap();

    let err = match s.watch("c", revs[1]).await {
        Err(e) => e,
        Ok(_) => panic!("a watch from a compacted revision was created"),
    };
    match &err {
        Error::Compacted {
            prefix,
            requested,
            oldest,
        } => assert_eq!(
            (prefix.as_str(), *requested, *oldest),
            ("c", revs[1], revs[3])
        ),
        other => panic!("expected Compacted, got {other}"),
    }
    assert!(err.to_string().contains("compacted"), "{err}");

    // From the compaction revision on, history is there.
    let mut w = s.watch("c", revs[3]).await.unwrap();
    let first = w.next().await.unwrap().unwrap();
    assert_eq!(first.revision(), revs[3]);
    // Listing still works, at the current revision.
    assert_eq!(s.list("c").await.unwrap().revision, revs[4]);
}
