//! Helpers shared by the integration tests.

use std::net::IpAddr;
use std::sync::Arc;
use trellis_ipam::{Ipam, PoolSpec, Reserve};
use trellis_store::{KvStore, MemoryStore};
use trellis_types::{ContainerId, Handle, IfName};

/// A handle for container `c`, interface `eth0`.
pub fn handle(c: &str) -> Handle {
    Handle::new(
        ContainerId::parse("container_id", c).unwrap(),
        IfName::parse("ifname", "eth0").unwrap(),
    )
}

/// Parses an address.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A pool spec.
pub fn spec(name: &str, cidr: &str, block: Option<u8>, reserve: Reserve) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        cidr: cidr.parse().unwrap(),
        block_prefix_len: block,
        reserve,
    }
}

/// A bridge pool spec with gateway `gw`.
pub fn bridge(name: &str, cidr: &str, block: Option<u8>, gw: &str) -> PoolSpec {
    spec(name, cidr, block, Reserve::Bridge { gateway: ip(gw) })
}

/// A fresh memory store and an allocator for host `h1` on it.
pub fn ipam() -> (Arc<MemoryStore>, Ipam) {
    let store = Arc::new(MemoryStore::new());
    let ipam = Ipam::new(store.clone() as Arc<dyn KvStore>, "h1");
    (store, ipam)
}

/// The store's current revision: unchanged means nothing was written.
pub async fn revision(store: &MemoryStore) -> u64 {
    store.list("").await.unwrap().revision
}
