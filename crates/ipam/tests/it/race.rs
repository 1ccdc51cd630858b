//! Allocators racing on one shared store never hand out an address twice.

use crate::util::{bridge, handle, spec};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use trellis_ipam::{Ipam, Reserve};
use trellis_store::{KvStore, MemoryStore, RedbStore};

/// Runs `per_ipam` allocations from each allocator, all tasks at once, and
/// checks that every address is distinct and recorded for its handle.
async fn race(ipams: Vec<Arc<Ipam>>, pool: &'static str, per_ipam: usize) {
    let mut tasks = Vec::new();
    for (n, ipam) in ipams.iter().enumerate() {
        for i in 0..per_ipam {
            let ipam = Arc::clone(ipam);
            tasks.push(tokio::spawn(async move {
                let h = handle(&format!("a{n}-c{i}"));
                (h.clone(), ipam.allocate(pool, &h).await)
            }));
        }
    }
    let mut seen: HashSet<IpAddr> = HashSet::new();
    for task in tasks {
        let (h, got) = task.await.unwrap();
        let ip = got.unwrap_or_else(|e| panic!("{h}: {e}"));
        assert!(seen.insert(ip), "{ip} handed out twice");
        let held = ipams[0].addresses_of(&h).await.unwrap();
        assert_eq!(held.iter().map(|a| a.ip).collect::<Vec<_>>(), [ip], "{h}");
    }
    assert_eq!(seen.len(), ipams.len() * per_ipam);
    let usage = ipams[0].usage(pool).await.unwrap();
    assert_eq!(usage.used, seen.len() as u128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_racing_on_one_memory_store_get_unique_addresses() {
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let a = Arc::new(Ipam::new(store.clone(), "h1"));
    let b = Arc::new(Ipam::new(store.clone(), "h2"));
    // Small blocks, so that claims race as well as allocations.
    a.create_pool(bridge("br", "10.0.0.0/22", Some(28), "10.0.0.1"))
        .await
        .unwrap();
    race(vec![a, b], "br", 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_allocators_of_one_host_share_its_blocks() {
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let a = Arc::new(Ipam::new(store.clone(), "h1"));
    let b = Arc::new(Ipam::new(store.clone(), "h1"));
    a.create_pool(spec("r", "fd00::/120", Some(124), Reserve::None))
        .await
        .unwrap();
    race(vec![a, b], "r", 128).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_racing_on_one_redb_store_get_unique_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KvStore> = Arc::new(RedbStore::open(dir.path().join("ipam.redb")).unwrap());
    let a = Arc::new(Ipam::new(store.clone(), "h1"));
    let b = Arc::new(Ipam::new(store.clone(), "h2"));
    a.create_pool(bridge("br", "10.0.0.0/24", Some(28), "10.0.0.1"))
        .await
        .unwrap();
    race(vec![a, b], "br", 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_filling_a_pool_to_the_last_address_borrow_from_each_other() {
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let a = Arc::new(Ipam::new(store.clone(), "h1"));
    let b = Arc::new(Ipam::new(store.clone(), "h2"));
    // Four blocks of 16, 64 allocations: claims, borrows and next-fit all race,
    // and nothing may be refused while an address is free.
    a.create_pool(spec("r", "10.0.0.0/26", Some(28), Reserve::None))
        .await
        .unwrap();
    race(vec![a.clone(), b.clone()], "r", 32).await;
    let lent = a.lent("r").await.unwrap().len() + b.lent("r").await.unwrap().len();
    let borrowed = a.borrowed("r").await.unwrap().len() + b.borrowed("r").await.unwrap().len();
    assert_eq!(lent, borrowed);
}
