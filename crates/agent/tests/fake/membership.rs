//! The agent as a cluster member, on the fake kernel, with a membership that
//! grants /30 blocks in order and can be fenced or run dry: allocation in a
//! cluster's routed network only inside granted blocks, one claim per full
//! block, nothing allocated while fenced, a bridge network's subnet from a
//! cluster pool, host-gw routes kept through convergence, and an event
//! for every block adopted or retired.

use crate::util::{agent, bridge_network, container, host, request, routed_network};
use async_trait::async_trait;
use ipnet::IpNet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use trellis_agent::{ClusterPool, ErrorClass, Event, Membership, MembershipError};
use trellis_route::{PeerRoute, Routes};
use trellis_types::PoolName;

#[derive(Default)]
struct FakeMembership {
    claims: AtomicU32,
    fenced: AtomicBool,
    dry: AtomicBool,
    released: Mutex<Vec<IpNet>>,
}

#[async_trait]
impl Membership for FakeMembership {
    fn may_allocate(&self) -> Result<(), MembershipError> {
        if self.fenced.load(Ordering::SeqCst) {
            return Err(MembershipError {
                class: ErrorClass::Unavailable,
                message: "fenced: no contact with the controller for 10 min".into(),
            });
        }
        Ok(())
    }

    async fn claim_block(&self, pool: &PoolName) -> Result<IpNet, MembershipError> {
        if self.dry.load(Ordering::SeqCst) {
            return Err(MembershipError {
                class: ErrorClass::ResourceExhausted,
                message: format!("pool {pool:?} has no free block"),
            });
        }
        if pool.as_str() == "br" {
            return Ok("10.10.3.0/24".parse().unwrap());
        }
        let n = self.claims.fetch_add(1, Ordering::SeqCst);
        Ok(format!("10.244.0.{}/30", 4 * n).parse().unwrap())
    }

    async fn release_block(&self, _: &PoolName, block: IpNet) -> Result<(), MembershipError> {
        self.released.lock().unwrap().push(block);
        Ok(())
    }
}

fn cluster_routed() -> trellis_agent::NetworkSpec {
    let mut spec = routed_network();
    spec.cluster_pools = vec![ClusterPool {
        name: "pods-v4".parse().unwrap(),
        block_len: 30,
    }];
    spec
}

#[tokio::test]
async fn a_cluster_network_allocates_only_in_granted_blocks_claiming_one_per_full_block() {
    let k = host();
    let a = agent(&k).await;
    let m = Arc::new(FakeMembership::default());
    a.join(m.clone());
    a.create_network(cluster_routed()).await.unwrap();
    let mut got = Vec::new();
    for i in 0..5 {
        let ns = container(&k, &format!("/run/netns/c{i}")).await;
        let ep = a
            .attach(request("pods", &format!("c{i}"), &ns, None))
            .await
            .unwrap();
        got.push(ep.addresses[0].to_string());
    }
    assert_eq!(
        got,
        [
            "10.244.0.0/32",
            "10.244.0.1/32",
            "10.244.0.2/32",
            "10.244.0.3/32",
            "10.244.0.4/32"
        ]
    );
    assert_eq!(m.claims.load(Ordering::SeqCst), 2);
    let owned = a.ipam().owned_blocks("pods.v4").await.unwrap();
    assert_eq!(owned.len(), 2, "{owned:?}");

    // Fenced: refused before anything is taken.
    m.fenced.store(true, Ordering::SeqCst);
    let ns = container(&k, "/run/netns/f").await;
    let e = a.attach(request("pods", "f", &ns, None)).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Unavailable);
    assert!(e.to_string().contains("fenced"), "{e}");
    m.fenced.store(false, Ordering::SeqCst);

    // The controller has nothing left: the attach says so, and leaves
    // nothing (the second block still has room for three).
    for i in 5..8 {
        let ns = container(&k, &format!("/run/netns/c{i}")).await;
        a.attach(request("pods", &format!("c{i}"), &ns, None))
            .await
            .unwrap();
    }
    m.dry.store(true, Ordering::SeqCst);
    let e = a.attach(request("pods", "g", &ns, None)).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::ResourceExhausted, "{e}");
    assert!(e.to_string().contains("no free block"), "{e}");
    assert_eq!(a.endpoints().await.unwrap().len(), 8);
    // Outside the granted blocks, a fixed address is refused by name.
    m.dry.store(false, Ordering::SeqCst);
    let mut fixed = request("pods", "x", &ns, None);
    fixed.fixed_addresses = vec!["10.244.9.9".parse().unwrap()];
    let e = a.attach(fixed).await.unwrap_err();
    assert!(e.to_string().contains("fixed_addresses"), "{e}");
}

#[tokio::test]
async fn a_bridge_network_takes_its_subnet_from_a_cluster_pool_and_gives_it_back() {
    let k = host();
    let a = agent(&k).await;
    let mut spec = bridge_network();
    spec.subnets.clear();
    spec.subnet_pool = Some("br".parse().unwrap());
    let e = a.create_network(spec.clone()).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::FailedPrecondition, "{e}");
    let m = Arc::new(FakeMembership::default());
    a.join(m.clone());
    let net = a.create_network(spec.clone()).await.unwrap();
    assert_eq!(
        net.spec.subnets,
        vec!["10.10.3.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        net.gateways,
        vec!["10.10.3.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(a.create_network(spec.clone()).await.unwrap(), net);
    let mut both = spec.clone();
    both.subnets = vec!["10.10.4.0/24".parse().unwrap()];
    let e = a.create_network(both).await.unwrap_err();
    assert!(e.to_string().contains("subnets"), "{e}");
    a.delete_network("web").await.unwrap();
    assert_eq!(*m.released.lock().unwrap(), net.spec.subnets);
}

#[tokio::test]
async fn peer_routes_are_installed_and_kept_by_convergence() {
    let k = host();
    let a = agent(&k).await;
    let via = |b: &str, v: &str| PeerRoute {
        block: b.parse().unwrap(),
        via: v.parse().unwrap(),
    };
    let two = vec![
        via("10.244.1.0/26", "10.1.253.102"),
        via("10.244.2.0/26", "10.1.253.103"),
    ];
    a.set_peer_routes(two.clone()).await.unwrap();
    assert_eq!(k.list_peer_routes().await.unwrap(), two);
    // Removed behind trellis's back: convergence puts it back.
    k.set_peer_routes(&two[..1]).await.unwrap();
    let r = a.reconcile().await.unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(k.list_peer_routes().await.unwrap(), two);
    a.set_peer_routes(two[1..].to_vec()).await.unwrap();
    assert_eq!(k.list_peer_routes().await.unwrap(), two[1..].to_vec());
}

#[tokio::test]
async fn blocks_adopted_and_retired_are_announced_and_exported() {
    let k = host();
    let a = agent(&k).await;
    a.join(Arc::new(FakeMembership::default()));
    a.create_network(cluster_routed()).await.unwrap();
    let mut events = a.subscribe();
    let local: PoolName = "pods.v4".parse().unwrap();
    let block: IpNet = "10.244.1.0/30".parse().unwrap();
    assert!(a.adopt_block(&local, block).await.unwrap());
    assert_eq!(events.try_recv().unwrap(), Event::BlocksChanged);
    assert_eq!(a.exported_prefixes().await.unwrap(), [block]);
    // Adopted again: nothing new, nothing announced.
    assert!(!a.adopt_block(&local, block).await.unwrap());
    assert!(events.try_recv().is_err());
    assert!(a.retire_block(&local, block).await.unwrap());
    assert_eq!(events.try_recv().unwrap(), Event::BlocksChanged);
    assert!(a.exported_prefixes().await.unwrap().is_empty());
}
