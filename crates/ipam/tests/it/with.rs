//! `allocate_with` / `release_with`: addresses of several pools and the
//! caller's own writes committed as one, on a real store.

use crate::util::{dual_stack, handle, ip, revision, spec};
use futures::StreamExt;
use std::time::Duration;
use trellis_ipam::{Error, Reserve, Want};
use trellis_store::{Expect, KvStore as _, Op, WatchEvent};

fn record(ips: &[std::net::IpAddr]) -> Vec<Op> {
    let value = format!("{ips:?}").into_bytes();
    vec![Op::put("agent/endpoints/c1/eth0", value, Expect::Absent)]
}

#[tokio::test]
async fn two_pools_and_a_record_land_as_one_commit() {
    let (store, ipam) = dual_stack().await;
    let before = revision(&store).await;
    let mut watch = store.watch("", 0).await.unwrap();
    let wants = [Want::next("n.v4"), Want::next("n.v6")];
    let ips = ipam
        .allocate_with(&handle("c1"), &wants, record)
        .await
        .unwrap();
    assert_eq!(ips, [ip("10.1.0.2"), ip("fd00:1::")]);

    // Two block claims and the record, nothing else, back to back.
    let mut keys = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        keys.push(event.key().to_owned());
        if let WatchEvent::Put { key, value, .. } = &event
            && key.starts_with("agent/")
        {
            assert_eq!(
                value,
                &format!("{ips:?}").into_bytes(),
                "the record names the addresses"
            );
        }
    }
    assert_eq!(
        keys,
        [
            "ipam/blocks/n.v4/10.1.0.0-26",
            "ipam/blocks/n.v6/fd00:1::-122",
            "agent/endpoints/c1/eth0"
        ]
    );
    assert_eq!(revision(&store).await, before + 3);
    assert_eq!(
        ipam.owned_blocks("n.v4").await.unwrap().len(),
        1,
        "the claim reached the cache"
    );

    // The same handle again gets the same addresses and writes only what the
    // caller adds (here: nothing).
    let again = ipam
        .allocate_with(&handle("c1"), &wants, |_| Vec::new())
        .await
        .unwrap();
    assert_eq!(again, ips);
    assert_eq!(revision(&store).await, before + 3);
}

#[tokio::test]
async fn a_taken_record_key_allocates_nothing() {
    let (store, ipam) = dual_stack().await;
    store
        .put_if(
            "agent/endpoints/c1/eth0",
            b"someone".to_vec(),
            Expect::Absent,
        )
        .await
        .unwrap();
    let before = revision(&store).await;
    let wants = [Want::next("n.v4"), Want::next("n.v6")];
    let err = ipam
        .allocate_with(&handle("c1"), &wants, record)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Precondition(_)), "{err}");
    assert!(err.to_string().contains("agent/endpoints/c1/eth0"), "{err}");
    assert_eq!(revision(&store).await, before, "a failed allocation wrote");
    assert_eq!(ipam.usage("n.v4").await.unwrap().used, 0);
    assert_eq!(ipam.usage("n.v6").await.unwrap().used, 0);
}

#[tokio::test]
async fn a_taken_fixed_address_allocates_nothing_in_the_other_pool() {
    let (store, ipam) = dual_stack().await;
    ipam.allocate_specific("n.v4", &handle("other"), ip("10.1.0.9"))
        .await
        .unwrap();
    let before = revision(&store).await;
    let wants = [Want::exactly("n.v4", ip("10.1.0.9")), Want::next("n.v6")];
    let err = ipam
        .allocate_with(&handle("c1"), &wants, record)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AddressTaken { .. }), "{err}");
    assert_eq!(revision(&store).await, before);

    let err = ipam
        .allocate_with(
            &handle("c1"),
            &[Want::next("n.v4"), Want::next("n.v4")],
            record,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pool"), "{err}");
    assert!(
        matches!(err, Error::Invalid(ref bad) if bad.field == "pool"),
        "{err}"
    );
    assert_eq!(revision(&store).await, before);
}

#[tokio::test]
async fn release_with_frees_every_pool_and_deletes_the_record_at_once() {
    let (store, ipam) = dual_stack().await;
    let wants = [Want::next("n.v4"), Want::next("n.v6")];
    ipam.allocate_with(&handle("c1"), &wants, record)
        .await
        .unwrap();
    let before = revision(&store).await;
    let gone = ipam
        .release_with(
            &handle("c1"),
            vec![Op::delete("agent/endpoints/c1/eth0", Expect::Any)],
        )
        .await
        .unwrap();
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert_eq!(
        revision(&store).await,
        before + 3,
        "two blocks and the record"
    );
    assert_eq!(store.get("agent/endpoints/c1/eth0").await.unwrap(), None);
    assert_eq!(ipam.usage("n.v4").await.unwrap().used, 0);
    assert_eq!(ipam.usage("n.v6").await.unwrap().used, 0);
    // Idempotent: nothing held, nothing to delete, nothing written.
    let none = ipam
        .release_with(
            &handle("c1"),
            vec![Op::delete("agent/endpoints/c1/eth0", Expect::Any)],
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(revision(&store).await, before + 3);
}

#[tokio::test]
async fn fresh_allocations_read_one_block_however_many_the_host_owns() {
    let store = std::sync::Arc::new(trellis_store::InstrumentedStore::default());
    let ipam = trellis_ipam::Ipam::new(store.clone(), "h1");
    ipam.create_pool(spec("f", "10.3.0.0/24", Some(28), Reserve::None))
        .await
        .unwrap();
    let mut got = std::collections::HashSet::new();
    for i in 0..200 {
        let ips = ipam
            .allocate_with(&handle(&format!("c{i}")), &[Want::fresh("f")], |_| {
                Vec::new()
            })
            .await
            .unwrap();
        assert!(got.insert(ips[0]), "{} handed out twice", ips[0]);
    }
    assert_eq!(ipam.usage("f").await.unwrap().used, 200);
    assert_eq!(ipam.owned_blocks("f").await.unwrap().len(), 13);

    let reads = |s: &trellis_store::InstrumentedStore| s.gets();
    let before = reads(&store);
    let fresh = ipam
        .allocate_with(&handle("one-more"), &[Want::fresh("f")], |_| Vec::new())
        .await
        .unwrap();
    assert_eq!(
        reads(&store) - before,
        1,
        "a fresh allocation reads the hinted block only"
    );
    let before = reads(&store);
    let again = ipam.allocate("f", &handle("one-more")).await.unwrap();
    assert_eq!(
        reads(&store) - before,
        13,
        "an idempotent one looks through every owned block"
    );
    assert_eq!(
        again, fresh[0],
        "the idempotent allocation found the fresh one's address"
    );
    assert!(got.insert(again));
}
