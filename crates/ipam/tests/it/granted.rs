//! Pools whose blocks a controller grants: allocation only inside adopted
//! blocks, never a claim or a borrow; retiring an empty block races
//! allocation safely.

use crate::util::{handle, ip, ipam, spec};
use ipnet::IpNet;
use std::sync::Arc;
use trellis_ipam::{BlockUse, Error, Ipam, Reserve};
use trellis_store::{KvStore, MemoryStore};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

async fn granted_pool(ipam: &Ipam) {
    let mut s = spec("g", "10.8.0.0/16", Some(30), Reserve::None);
    s.granted = true;
    ipam.create_pool(s).await.unwrap();
}

#[tokio::test]
async fn allocation_stays_inside_the_granted_blocks() {
    let (store, ipam) = ipam();
    granted_pool(&ipam).await;
    // Another host's block in the same store: never borrowed from.
    let other = Ipam::new(store.clone() as Arc<dyn KvStore>, "h2");
    other.adopt_block("g", net("10.8.0.8/30")).await.unwrap();

    let e = ipam.allocate("g", &handle("a")).await.unwrap_err();
    assert!(matches!(e, Error::NoGrantedRoom { .. }), "{e}");
    assert!(ipam.adopt_block("g", net("10.8.0.4/30")).await.unwrap());
    assert!(!ipam.adopt_block("g", net("10.8.0.4/30")).await.unwrap());
    let mut got = Vec::new();
    for c in ["a", "b", "c", "d"] {
        got.push(ipam.allocate("g", &handle(c)).await.unwrap());
    }
    assert_eq!(
        got,
        ["10.8.0.4", "10.8.0.5", "10.8.0.6", "10.8.0.7"].map(ip)
    );
    let e = ipam.allocate("g", &handle("e")).await.unwrap_err();
    assert!(matches!(e, Error::NoGrantedRoom { .. }), "{e}");
    assert!(e.to_string().contains("claimed from the controller"), "{e}");
    let e = ipam
        .allocate_specific("g", &handle("f"), ip("10.8.1.1"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("granted to this node"), "{e}");
    assert_eq!(
        ipam.block_usage("g").await.unwrap(),
        vec![BlockUse {
            cidr: net("10.8.0.4/30"),
            used: 4,
            free: 0,
            frozen: false,
        }]
    );
    // Neither a block of another size nor one outside the pool.
    for bad in ["10.8.0.0/29", "10.9.0.0/30", "10.8.0.8/30"] {
        assert!(ipam.adopt_block("g", net(bad)).await.is_err(), "{bad}");
    }
}

#[tokio::test]
async fn only_an_empty_block_retires() {
    let (_, ipam) = ipam();
    granted_pool(&ipam).await;
    let block = net("10.8.0.4/30");
    ipam.adopt_block("g", block).await.unwrap();
    let a = ipam.allocate("g", &handle("a")).await.unwrap();
    assert!(!ipam.retire_block("g", block).await.unwrap());
    ipam.release(&handle("a")).await.unwrap();
    assert!(ipam.retire_block("g", block).await.unwrap());
    assert!(!ipam.retire_block("g", block).await.unwrap());
    assert!(ipam.block_usage("g").await.unwrap().is_empty());
    let e = ipam.allocate("g", &handle("b")).await.unwrap_err();
    assert!(matches!(e, Error::NoGrantedRoom { .. }), "{e} (after {a})");
}

/// An allocation and a retirement of the same empty block, at once, many
/// times: either the block retires and the allocation finds no room, or
/// the allocation wins and the block stays — never an address in a block
/// that was given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirement_never_strands_an_allocation() {
    let block = net("10.8.0.4/30");
    let (mut retired, mut kept) = (0, 0);
    for i in 0..100 {
        let store = Arc::new(MemoryStore::new());
        let ipam = Arc::new(Ipam::new(store as Arc<dyn KvStore>, "h1"));
        granted_pool(&ipam).await;
        ipam.adopt_block("g", block).await.unwrap();
        let h = handle(&format!("c{i}"));
        let (a, r) = tokio::join!(
            tokio::spawn({
                let (ipam, h) = (ipam.clone(), h.clone());
                async move { ipam.allocate("g", &h).await }
            }),
            tokio::spawn({
                let ipam = ipam.clone();
                async move { ipam.retire_block("g", block).await }
            }),
        );
        let (a, r) = (a.unwrap(), r.unwrap().unwrap());
        let usage = ipam.block_usage("g").await.unwrap();
        if r {
            retired += 1;
            assert!(matches!(a, Err(Error::NoGrantedRoom { .. })), "{a:?}");
            assert!(usage.is_empty());
        } else {
            kept += 1;
            assert!(block.contains(&a.unwrap()));
            assert_eq!(usage[0].used, 1);
        }
    }
    assert_eq!(retired + kept, 100);
}

#[tokio::test]
async fn a_frozen_block_hands_out_nothing_new_until_granted_again() {
    let (_, ipam) = ipam();
    granted_pool(&ipam).await;
    let (b1, b2) = (net("10.8.0.4/30"), net("10.8.0.8/30"));
    ipam.adopt_block("g", b1).await.unwrap();
    let a = ipam.allocate("g", &handle("a")).await.unwrap();
    assert!(ipam.freeze_block("g", b1).await.unwrap());
    assert!(!ipam.freeze_block("g", b1).await.unwrap());
    // What it holds stays; nothing new comes from it.
    assert_eq!(ipam.allocate("g", &handle("a")).await.unwrap(), a);
    let e = ipam.allocate("g", &handle("b")).await.unwrap_err();
    assert!(matches!(e, Error::NoGrantedRoom { .. }), "{e}");
    ipam.adopt_block("g", b2).await.unwrap();
    assert!(b2.contains(&ipam.allocate("g", &handle("b")).await.unwrap()));
    let usage = ipam.block_usage("g").await.unwrap();
    assert_eq!((usage[0].frozen, usage[0].free), (true, 0));
    // Granted again: it thaws.
    ipam.adopt_block("g", b1).await.unwrap();
    assert!(!ipam.block_usage("g").await.unwrap()[0].frozen);
}
