//! Routed mode across hosts: owned blocks, and borrowing from another host's
//! block when a host's blocks are full and none is left to claim.

use crate::util::{handle, ip, revision, spec};
use std::sync::Arc;
use trellis_ipam::{Allocation, Error, Ipam, Reserve};
use trellis_store::{KvStore, MemoryStore};

/// Hosts `a` and `b` on one store, with pool `r` = 10.0.0.0/27 in two /28s.
async fn two_hosts() -> (Arc<MemoryStore>, Ipam, Ipam) {
    let store = Arc::new(MemoryStore::new());
    let a = Ipam::new(store.clone() as Arc<dyn KvStore>, "a");
    let b = Ipam::new(store.clone() as Arc<dyn KvStore>, "b");
    a.create_pool(spec("r", "10.0.0.0/27", Some(28), Reserve::None))
        .await
        .unwrap();
    (store, a, b)
}

#[tokio::test]
async fn owned_blocks_follow_claims_and_are_served_from_the_cache() {
    let (store, a, b) = two_hosts().await;
    assert!(a.owned_blocks("r").await.unwrap().is_empty());
    a.allocate("r", &handle("a0")).await.unwrap();
    b.allocate("r", &handle("b0")).await.unwrap();
    let rev = revision(&store).await;
    assert_eq!(
        a.owned_blocks("r").await.unwrap(),
        ["10.0.0.0/28".parse().unwrap()]
    );
    assert_eq!(
        b.owned_blocks("r").await.unwrap(),
        ["10.0.0.16/28".parse().unwrap()]
    );
    assert_eq!(revision(&store).await, rev, "reads only");

    // A fresh allocator of host a (a restarted agent) loads it from the store.
    let a2 = Ipam::new(store.clone() as Arc<dyn KvStore>, "a");
    assert_eq!(
        a2.owned_blocks("r").await.unwrap(),
        a.owned_blocks("r").await.unwrap()
    );
    assert!(matches!(
        a2.refresh_owned_blocks("nope").await,
        Err(Error::PoolNotFound { .. })
    ));
}

#[tokio::test]
async fn a_full_host_borrows_from_another_hosts_block_until_release() {
    let (_, a, b) = two_hosts().await;
    for i in 0..16 {
        a.allocate("r", &handle(&format!("a{i}"))).await.unwrap();
    }
    let b0 = b.allocate("r", &handle("b0")).await.unwrap();
    assert_eq!(b0, ip("10.0.0.16"), "b claimed the other block");

    let borrowed = a.allocate("r", &handle("a16")).await.unwrap();
    assert_eq!(borrowed, ip("10.0.0.17"), "next-fit in b's block");
    assert_eq!(
        a.allocate("r", &handle("a16")).await.unwrap(),
        borrowed,
        "idempotent"
    );
    assert_eq!(a.owned_blocks("r").await.unwrap().len(), 1, "no claim");
    let want = Allocation {
        pool: "r".into(),
        ip: borrowed,
        handle: handle("a16"),
        block_host: "b".into(),
        borrower: Some("a".into()),
    };
    assert_eq!(want.host(), "a");
    assert_eq!(a.borrowed("r").await.unwrap(), std::slice::from_ref(&want));
    assert_eq!(b.lent("r").await.unwrap(), std::slice::from_ref(&want));
    assert!(b.borrowed("r").await.unwrap().is_empty());
    assert_eq!(
        a.addresses_of(&handle("a16")).await.unwrap(),
        std::slice::from_ref(&want)
    );

    // b fills the rest of its block and never hands out the borrowed one.
    let mut b_got = vec![b0];
    for i in 1..15 {
        b_got.push(b.allocate("r", &handle(&format!("b{i}"))).await.unwrap());
    }
    assert!(!b_got.contains(&borrowed), "{borrowed} handed out twice");
    let err = b.allocate("r", &handle("b15")).await.unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err}");

    // Released, the address goes back to b's block, and b may use it.
    assert_eq!(a.release(&handle("a16")).await.unwrap(), [want]);
    assert!(a.borrowed("r").await.unwrap().is_empty());
    assert!(b.lent("r").await.unwrap().is_empty());
    assert_eq!(b.allocate("r", &handle("b15")).await.unwrap(), borrowed);
}

#[tokio::test]
async fn strict_affinity_never_borrows() {
    let (store, a, b) = two_hosts().await;
    let a = Ipam::new(store as Arc<dyn KvStore>, a.host()).with_strict_affinity(true);
    for i in 0..16 {
        a.allocate("r", &handle(&format!("a{i}"))).await.unwrap();
    }
    b.allocate("r", &handle("b0")).await.unwrap();
    let err = a.allocate("r", &handle("a16")).await.unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err}");
}

#[tokio::test]
async fn a_specific_address_in_another_hosts_block_is_recorded_as_borrowed() {
    let (_, a, b) = two_hosts().await;
    b.allocate("r", &handle("b0")).await.unwrap(); // claims 10.0.0.0/28
    a.allocate_specific("r", &handle("x"), ip("10.0.0.4"))
        .await
        .unwrap();
    a.allocate_specific("r", &handle("x"), ip("10.0.0.4"))
        .await
        .unwrap();
    let got = a.borrowed("r").await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (
            got[0].ip,
            got[0].block_host.as_str(),
            got[0].borrower.as_deref()
        ),
        (ip("10.0.0.4"), "b", Some("a"))
    );
    assert!(a.owned_blocks("r").await.unwrap().is_empty());
    // allocate of the same handle on host a finds it (cached as borrowed).
    assert_eq!(a.allocate("r", &handle("x")).await.unwrap(), ip("10.0.0.4"));
    // In an unclaimed block, a fixed address claims the block instead.
    a.allocate_specific("r", &handle("y"), ip("10.0.0.19"))
        .await
        .unwrap();
    assert_eq!(
        a.owned_blocks("r").await.unwrap(),
        ["10.0.0.16/28".parse().unwrap()]
    );
    assert_eq!(a.borrowed("r").await.unwrap().len(), 1);
}
