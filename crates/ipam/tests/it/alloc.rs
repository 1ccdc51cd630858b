//! Allocation behaviour on one allocator: next-fit, idempotency, exhaustion,
//! release, reservations, IPv6.

use crate::util::{bridge, handle, ip, ipam, spec};
use std::collections::HashSet;
use trellis_ipam::{Allocation, Error, Reserve};
use trellis_store::KvStore as _;

#[tokio::test]
async fn bridge_pool_skips_network_gateway_and_broadcast() {
    let (_, ipam) = ipam();
    ipam.create_pool(bridge("br", "192.168.169.0/24", None, "192.168.169.1"))
        .await
        .unwrap();
    let mut got = HashSet::new();
    for i in 0..253 {
        assert!(
            got.insert(
                ipam.allocate("br", &handle(&format!("c{i}")))
                    .await
                    .unwrap()
            )
        );
    }
    for reserved in ["192.168.169.0", "192.168.169.1", "192.168.169.255"] {
        assert!(!got.contains(&ip(reserved)), "{reserved} was handed out");
    }
    // Block boundaries inside the subnet are ordinary addresses.
    assert!(got.contains(&ip("192.168.169.64")) && got.contains(&ip("192.168.169.63")));
    let err = ipam
        .allocate("br", &handle("one-too-many"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err}");
    assert!(
        err.to_string().contains("pool \"br\" is exhausted"),
        "{err}"
    );
}

#[tokio::test]
async fn routed_pool_uses_every_address() {
    let (_, ipam) = ipam();
    ipam.create_pool(spec("r", "10.9.0.0/30", None, Reserve::None))
        .await
        .unwrap();
    let mut got = Vec::new();
    for i in 0..4 {
        got.push(ipam.allocate("r", &handle(&format!("c{i}"))).await.unwrap());
    }
    assert_eq!(
        got,
        ["10.9.0.0", "10.9.0.1", "10.9.0.2", "10.9.0.3"].map(ip)
    );
    assert!(matches!(
        ipam.allocate("r", &handle("x")).await,
        Err(Error::Exhausted { .. })
    ));
}

#[tokio::test]
async fn same_handle_twice_gets_the_same_address() {
    let (_, ipam) = ipam();
    ipam.create_pool(bridge("br", "10.0.0.0/24", None, "10.0.0.1"))
        .await
        .unwrap();
    let a = ipam.allocate("br", &handle("a")).await.unwrap();
    ipam.allocate("br", &handle("b")).await.unwrap();
    assert_eq!(ipam.allocate("br", &handle("a")).await.unwrap(), a);
    let usage = ipam.usage("br").await.unwrap();
    assert_eq!(usage.used, 2);
}

#[tokio::test]
async fn released_address_is_reused_only_after_the_rest_of_the_block() {
    let (_, ipam) = ipam();
    // One /28 block with every address usable: ordinals 0..16.
    ipam.create_pool(spec("r", "10.0.0.0/28", None, Reserve::None))
        .await
        .unwrap();
    let first = ipam.allocate("r", &handle("first")).await.unwrap();
    ipam.release(&handle("first")).await.unwrap();
    let mut next = Vec::new();
    for i in 0..15 {
        next.push(ipam.allocate("r", &handle(&format!("c{i}"))).await.unwrap());
    }
    assert!(
        !next.contains(&first),
        "{first} was reused before the block was used up"
    );
    assert_eq!(ipam.allocate("r", &handle("last")).await.unwrap(), first);
}

#[tokio::test]
async fn release_is_by_handle_across_pools_and_idempotent() {
    let (_, ipam) = ipam();
    ipam.create_pool(bridge("v4", "10.0.0.0/24", None, "10.0.0.1"))
        .await
        .unwrap();
    ipam.create_pool(bridge("v6", "fd00:1::/64", None, "fd00:1::1"))
        .await
        .unwrap();
    let a4 = ipam.allocate("v4", &handle("a")).await.unwrap();
    let a6 = ipam.allocate("v6", &handle("a")).await.unwrap();
    assert_eq!(a6, ip("fd00:1::2"));
    let b4 = ipam.allocate("v4", &handle("b")).await.unwrap();
    let want = vec![
        Allocation {
            pool: "v4".into(),
            ip: a4,
            handle: handle("a"),
            block_host: "h1".into(),
            borrower: None,
        },
        Allocation {
            pool: "v6".into(),
            ip: a6,
            handle: handle("a"),
            block_host: "h1".into(),
            borrower: None,
        },
    ];
    assert_eq!(ipam.addresses_of(&handle("a")).await.unwrap(), want);
    let mut released = ipam.release(&handle("a")).await.unwrap();
    released.sort();
    assert_eq!(released, want);
    assert!(ipam.release(&handle("a")).await.unwrap().is_empty());
    assert!(ipam.release(&handle("never")).await.unwrap().is_empty());
    assert!(ipam.addresses_of(&handle("a")).await.unwrap().is_empty());
    assert_eq!(ipam.addresses_of(&handle("b")).await.unwrap()[0].ip, b4);
}

#[tokio::test]
async fn blocks_are_claimed_one_after_another() {
    let (store, ipam) = ipam();
    ipam.create_pool(spec("r", "10.0.0.0/24", Some(28), Reserve::None))
        .await
        .unwrap();
    for i in 0..17 {
        ipam.allocate("r", &handle(&format!("c{i}"))).await.unwrap();
    }
    let keys: Vec<_> = store
        .list("ipam/blocks/r")
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        keys,
        ["ipam/blocks/r/10.0.0.0-28", "ipam/blocks/r/10.0.0.16-28"]
    );
    let usage = ipam.usage("r").await.unwrap();
    assert_eq!(
        (usage.used, usage.free, usage.claimed_blocks),
        (17, 256 - 17, 2)
    );
}

#[tokio::test]
async fn unknown_pool_is_reported_by_name() {
    let (_, ipam) = ipam();
    let err = ipam.allocate("nope", &handle("a")).await.unwrap_err();
    assert!(matches!(err, Error::PoolNotFound { .. }), "{err}");
    assert_eq!(err.to_string(), "pool \"nope\" not found");
}

#[tokio::test]
async fn leaks_are_allocations_of_unknown_handles() {
    let (_, ipam) = ipam();
    ipam.create_pool(bridge("br", "10.0.0.0/24", None, "10.0.0.1"))
        .await
        .unwrap();
    ipam.allocate("br", &handle("live")).await.unwrap();
    let dead = ipam.allocate("br", &handle("dead")).await.unwrap();
    let valid = HashSet::from([handle("live")]);
    let leaks = ipam.check_leaks(&valid).await.unwrap();
    assert_eq!(
        leaks,
        vec![Allocation {
            pool: "br".into(),
            ip: dead,
            handle: handle("dead"),
            block_host: "h1".into(),
            borrower: None,
        }]
    );
}
