//! Unit tests against `MockKvStore`: retries on conflict, errors surfaced.

use crate::pool::{Pool, PoolSet, Reserve};
use crate::{Error, Ipam, Want};
use mockall::predicate::{always, eq};
use std::sync::Arc;
use trellis_store::{Expect, Listing, MockKvStore, Op, Versioned};
use trellis_types::{ContainerId, Handle, IfName};

const BLOCK0: &str = "ipam/blocks/p/10.0.0.0-26";

fn handle() -> Handle {
    Handle::new(
        ContainerId::parse("c", "c1").unwrap(),
        IfName::parse("i", "eth0").unwrap(),
    )
}

/// A store holding one bridge pool `p` (10.0.0.0/24) and no blocks.
fn store_with_pool() -> MockKvStore {
    let mut set = PoolSet::default();
    set.pools.insert("p".into(), ipam_pool());
    let bytes = serde_json::to_vec(&set).unwrap();
    let mut store = MockKvStore::new();
    store
        .expect_get()
        .with(eq("ipam/pools"))
        .returning(move |_| {
            Ok(Some(Versioned {
                value: bytes.clone(),
                revision: 1,
            }))
        });
    store
        .expect_list()
        .with(eq("ipam/blocks/p"))
        .returning(|_| {
            Ok(Listing {
                revision: 1,
                entries: vec![],
            })
        });
    store
}

fn conflict() -> trellis_store::Error {
    trellis_store::Error::Conflict {
        key: BLOCK0.into(),
        expected: Expect::Absent,
        actual: Some(2),
    }
}

#[tokio::test]
async fn a_lost_claim_is_retried() {
    let mut store = store_with_pool();
    let mut seq = mockall::Sequence::new();
    store
        .expect_put_if()
        .with(eq(BLOCK0), always(), eq(Expect::Absent))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(conflict()));
    store
        .expect_put_if()
        .with(eq(BLOCK0), always(), eq(Expect::Absent))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(3));
    let ipam = Ipam::new(Arc::new(store), "h1");
    let ip = ipam.allocate("p", &handle()).await.unwrap();
    assert_eq!(ip, "10.0.0.2".parse::<std::net::IpAddr>().unwrap());
}

#[tokio::test]
async fn endless_conflicts_end_in_a_contention_error() {
    let mut store = store_with_pool();
    store
        .expect_put_if()
        .times(3)
        .returning(|_, _, _| Err(conflict()));
    let ipam = Ipam::new(Arc::new(store), "h1").with_max_attempts(4);
    let err = ipam.allocate("p", &handle()).await.unwrap_err();
    assert!(
        matches!(err, Error::Contention { attempts: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("\"p\""), "{err}");
}

#[tokio::test]
async fn a_store_error_is_surfaced_and_not_retried() {
    let mut store = store_with_pool();
    store
        .expect_put_if()
        .times(1)
        .returning(|k, _, _| Err(trellis_store::Error::backend(k, "disk on fire")));
    let ipam = Ipam::new(Arc::new(store), "h1");
    let err = ipam.allocate("p", &handle()).await.unwrap_err();
    assert!(
        matches!(err, Error::Store(trellis_store::Error::Backend { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("disk on fire"), "{err}");
}

#[tokio::test]
async fn an_owned_block_costs_one_read_and_one_cas() {
    let mut store = store_with_pool();
    store.expect_put_if().times(1).returning(|_, _, _| Ok(3));
    let ipam = Ipam::new(Arc::new(store), "h1");
    ipam.allocate("p", &handle()).await.unwrap();

    // From here on the block is cached as owned: one get and one CAS.
    let mut store = MockKvStore::new();
    let block = {
        let pool = ipam_pool();
        let mut b = crate::block::Block::new(&pool, "10.0.0.0/26".parse().unwrap(), "h1");
        b.allocate_next(&handle(), "h1");
        b.encode()
    };
    store
        .expect_get()
        .with(eq(BLOCK0))
        .times(1)
        .returning(move |_| {
            Ok(Some(Versioned {
                value: block.clone(),
                revision: 3,
            }))
        });
    store
        .expect_put_if()
        .with(eq(BLOCK0), always(), eq(Expect::Revision(3)))
        .times(1)
        .returning(|_, _, _| Ok(4));
    let ipam = ipam.with_store(Arc::new(store));
    let other = Handle::new(
        ContainerId::parse("c", "c2").unwrap(),
        IfName::parse("i", "eth0").unwrap(),
    );
    let ip = ipam.allocate("p", &other).await.unwrap();
    assert_eq!(ip, "10.0.0.3".parse::<std::net::IpAddr>().unwrap());
}

#[tokio::test]
async fn owned_blocks_after_the_first_look_touch_no_store() {
    let mut store = store_with_pool();
    store.expect_put_if().times(1).returning(|_, _, _| Ok(3));
    let ipam = Ipam::new(Arc::new(store), "h1");
    ipam.allocate("p", &handle()).await.unwrap();
    // A store with no expectations: any call would panic.
    let ipam = ipam.with_store(Arc::new(MockKvStore::new()));
    let want: Vec<ipnet::IpNet> = vec!["10.0.0.0/26".parse().unwrap()];
    for _ in 0..3 {
        assert_eq!(ipam.owned_blocks("p").await.unwrap(), want);
    }
}

/// An allocator for `h1` that has claimed block 0 of `p` (revision 3,
/// holding `handle()`), over a store that expects nothing yet.
async fn with_owned_block(mut store: MockKvStore) -> Ipam {
    let block = {
        let pool = ipam_pool();
        let mut b = crate::block::Block::new(&pool, "10.0.0.0/26".parse().unwrap(), "h1");
        b.allocate_next(&handle(), "h1");
        b.encode()
    };
    store.expect_get().with(eq(BLOCK0)).returning(move |_| {
        Ok(Some(Versioned {
            value: block.clone(),
            revision: 3,
        }))
    });
    let mut first = store_with_pool();
    first.expect_put_if().times(1).returning(|_, _, _| Ok(3));
    let ipam = Ipam::new(Arc::new(first), "h1");
    ipam.allocate("p", &handle()).await.unwrap();
    ipam.with_store(Arc::new(store))
}

fn other() -> Handle {
    Handle::new(
        ContainerId::parse("c", "c2").unwrap(),
        IfName::parse("i", "eth0").unwrap(),
    )
}

#[tokio::test]
async fn an_allocation_with_a_record_is_one_transaction_and_no_put() {
    let mut store = MockKvStore::new();
    store
        .expect_txn()
        .withf(|ops| {
            let keys: Vec<(&str, Expect)> = ops.iter().map(|o| (o.key(), o.expected())).collect();
            keys == [(BLOCK0, Expect::Revision(3)), ("rec", Expect::Absent)]
                && matches!(&ops[1], Op::Put { value, .. } if value == b"10.0.0.3")
        })
        .times(1)
        .returning(|_| Ok(5));
    store.expect_put_if().never();
    let ipam = with_owned_block(store).await;
    let ips = ipam
        .allocate_with(&other(), &[Want::next("p")], |ips| {
            vec![Op::put(
                "rec",
                ips[0].to_string().into_bytes(),
                Expect::Absent,
            )]
        })
        .await
        .unwrap();
    assert_eq!(ips, ["10.0.0.3".parse::<std::net::IpAddr>().unwrap()]);
}

#[tokio::test]
async fn a_lost_race_in_a_transaction_is_retried_whole() {
    let mut store = MockKvStore::new();
    let mut seq = mockall::Sequence::new();
    store
        .expect_txn()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(conflict_on(BLOCK0)));
    store
        .expect_txn()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(6));
    let ipam = with_owned_block(store).await;
    let built = std::sync::atomic::AtomicUsize::new(0);
    ipam.allocate_with(&other(), &[Want::next("p")], |_| {
        built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        vec![Op::put("rec", b"r".to_vec(), Expect::Absent)]
    })
    .await
    .unwrap();
    assert_eq!(
        built.into_inner(),
        2,
        "the caller's writes are rebuilt per attempt"
    );
}

#[tokio::test]
async fn a_conflict_on_the_callers_key_is_not_retried() {
    let mut store = MockKvStore::new();
    store
        .expect_txn()
        .times(1)
        .returning(|_| Err(conflict_on("rec")));
    let ipam = with_owned_block(store).await;
    let err = ipam
        .allocate_with(&other(), &[Want::next("p")], |_| {
            vec![Op::put("rec", b"r".to_vec(), Expect::Absent)]
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Precondition(_)), "{err}");
    assert!(err.to_string().contains("\"rec\""), "{err}");
}

#[tokio::test]
async fn a_release_that_loses_a_race_rereads_and_keeps_the_winners_write() {
    let pools = {
        let mut set = PoolSet::default();
        set.pools.insert("p".into(), ipam_pool());
        serde_json::to_vec(&set).unwrap()
    };
    // Read 1: c1 holds .2. Read 2: meanwhile c2 took .3 (revision 7).
    let mut block = crate::block::Block::new(&ipam_pool(), "10.0.0.0/26".parse().unwrap(), "h1");
    block.allocate_next(&handle(), "h1");
    let first = block.encode();
    block.allocate_next(&other(), "h1");
    let second = block.encode();

    // No `list` is expected: a call to it would panic.
    let mut store = MockKvStore::new();
    store
        .expect_get()
        .with(eq("ipam/pools"))
        .times(2)
        .returning(move |_| {
            Ok(Some(Versioned {
                value: pools.clone(),
                revision: 1,
            }))
        });
    let mut reads = mockall::Sequence::new();
    for (value, revision) in [(first, 5), (second, 7)] {
        store
            .expect_get()
            .with(eq(BLOCK0))
            .times(1)
            .in_sequence(&mut reads)
            .returning(move |_| {
                Ok(Some(Versioned {
                    value: value.clone(),
                    revision,
                }))
            });
    }
    let written = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut commits = mockall::Sequence::new();
    store
        .expect_txn()
        .withf(|ops| ops[0].expected() == Expect::Revision(5))
        .times(1)
        .in_sequence(&mut commits)
        .returning(|_| Err(conflict_on(BLOCK0)));
    let log = written.clone();
    store
        .expect_txn()
        .times(1)
        .in_sequence(&mut commits)
        .returning(move |ops| {
            log.lock().unwrap().extend(ops);
            Ok(8)
        });

    let ipam = Ipam::new(Arc::new(store), "h1");
    let pool = trellis_types::PoolName::parse("pool", "p").unwrap();
    let ip: std::net::IpAddr = "10.0.0.2".parse().unwrap();
    let gone = ipam
        .release_addresses_with(
            &handle(),
            &[(pool, ip)],
            vec![Op::delete("rec", Expect::Any)],
        )
        .await
        .unwrap();
    assert_eq!(gone.iter().map(|a| a.ip).collect::<Vec<_>>(), [ip]);

    let ops = written.lock().unwrap();
    let keys: Vec<(&str, Expect)> = ops.iter().map(|o| (o.key(), o.expected())).collect();
    assert_eq!(
        keys,
        [(BLOCK0, Expect::Revision(7)), ("rec", Expect::Any)],
        "the retry writes over the fresh read, with the record's delete"
    );
    let Op::Put { value, .. } = &ops[0] else {
        panic!("{:?}", ops[0]);
    };
    let after = crate::block::Block::decode(BLOCK0, value).unwrap();
    let (two, three) = (
        after.ordinal(ip),
        after.ordinal("10.0.0.3".parse().unwrap()),
    );
    assert_eq!(after.holder(two), None, "c1's address is free");
    assert_eq!(
        after.holder(three),
        Some(&other()),
        "c2's allocation survived"
    );
}

fn conflict_on(key: &str) -> trellis_store::Error {
    trellis_store::Error::Conflict {
        key: key.into(),
        expected: Expect::Absent,
        actual: Some(2),
    }
}

fn ipam_pool() -> Pool {
    Pool {
        name: "p".into(),
        cidr: "10.0.0.0/24".parse().unwrap(),
        block_prefix_len: 26,
        reserve: Reserve::Bridge {
            gateway: "10.0.0.1".parse().unwrap(),
        },
        granted: false,
    }
}
