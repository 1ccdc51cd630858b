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
        granted: false,
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

/// An allocator with pools `n.v4` (a bridge /24, gateway `10.1.0.1`) and
/// `n.v6` (a /64), as a dual-stack network has them.
pub async fn dual_stack() -> (Arc<MemoryStore>, Ipam) {
    let (store, ipam) = ipam();
    ipam.create_pool(bridge("n.v4", "10.1.0.0/24", None, "10.1.0.1"))
        .await
        .unwrap();
    ipam.create_pool(spec("n.v6", "fd00:1::/64", None, Reserve::None))
        .await
        .unwrap();
    (store, ipam)
}

/// The store's current revision: unchanged means nothing was written.
pub async fn revision(store: &MemoryStore) -> u64 {
    store.list("").await.unwrap().revision
}
