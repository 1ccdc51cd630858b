//! Property: random allocate / release / fixed-address sequences of two hosts
//! on one store never give one address to two handles, record each address
//! as held by the host that took it (borrowed or not), run out only when the
//! whole pool is used (borrowing), and the usage counts always add up.

use crate::util::{bridge, handle, spec};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use trellis_ipam::{Error, Ipam, Pool, PoolSpec, Reserve};
use trellis_store::{KvStore, MemoryStore};
use trellis_types::Handle;

/// An operation and the host (0 or 1) that does it.
#[derive(Debug, Clone)]
enum Op {
    Allocate(usize, u8),
    Release(usize, u8),
    Specific(usize, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..2, 0u8..40).prop_map(|(n, h)| Op::Allocate(n, h)),
        2 => (0usize..2, 0u8..40).prop_map(|(n, h)| Op::Release(n, h)),
        1 => (0usize..2, 0u8..40, 0u8..32).prop_map(|(n, h, o)| Op::Specific(n, h, o)),
    ]
}

/// Handle `h` of host `n`: each host's containers are its own.
fn hh(n: usize, h: u8) -> Handle {
    handle(&format!("c{n}-{h}"))
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    prop_oneof![
        Just(bridge("p", "10.0.0.0/27", Some(29), "10.0.0.9")),
        Just(spec("p", "fd00::/123", Some(125), Reserve::None)),
    ]
}

/// The model: which handle holds each address, for which host.
type Model = BTreeMap<IpAddr, (Handle, usize)>;

fn held_by(model: &Model, h: &Handle) -> Vec<IpAddr> {
    model
        .iter()
        .filter(|(_, (x, _))| x == h)
        .map(|(ip, _)| *ip)
        .collect()
}

async fn apply(ipams: &[Ipam; 2], pool: &Pool, model: &mut Model, op: Op) {
    match op {
        Op::Allocate(n, h) => {
            let h = hh(n, h);
            let held = held_by(model, &h);
            let usable = pool.capacity() - pool.reserved().len() as u128;
            match ipams[n].allocate("p", &h).await {
                Ok(ip) if !held.is_empty() => {
                    assert!(held.contains(&ip), "{h} got {ip}, holds {held:?}")
                }
                Ok(ip) => {
                    assert!(!pool.is_reserved(ip), "{ip} is reserved");
                    assert!(model.insert(ip, (h, n)).is_none(), "{ip} handed out twice");
                }
                Err(Error::Exhausted { .. }) => {
                    assert_eq!(model.len() as u128, usable, "early exhaustion")
                }
                Err(e) => panic!("allocate: {e}"),
            }
        }
        Op::Release(n, h) => {
            let h = hh(n, h);
            // Any host may release any handle (by handle, across blocks).
            let released = ipams[1 - n].release(&h).await.unwrap();
            let ips: HashSet<IpAddr> = released.iter().map(|a| a.ip).collect();
            let held: HashSet<IpAddr> = held_by(model, &h).into_iter().collect();
            assert_eq!(ips, held, "release of {h}");
            model.retain(|_, (x, _)| *x != h);
        }
        Op::Specific(n, h, offset) => {
            let h = hh(n, h);
            let ip = pool
                .blocks()
                .flat_map(|b| b.hosts_all())
                .nth(usize::from(offset))
                .unwrap();
            match ipams[n].allocate_specific("p", &h, ip).await {
                Ok(()) => {
                    let before = model.insert(ip, (h.clone(), n));
                    assert!(before.is_none_or(|x| x == (h, n)));
                }
                Err(Error::AddressTaken { holder, .. }) => {
                    assert_eq!(model.get(&ip).map(|x| &x.0), Some(&holder))
                }
                Err(Error::Invalid(_)) => assert!(pool.is_reserved(ip)),
                Err(e) => panic!("allocate_specific {ip}: {e}"),
            }
        }
    }
}

/// Every address of every block, network and broadcast included.
trait AllHosts {
    fn hosts_all(&self) -> Vec<IpAddr>;
}

impl AllHosts for ipnet::IpNet {
    fn hosts_all(&self) -> Vec<IpAddr> {
        match self {
            ipnet::IpNet::V4(n) => n
                .subnets(32)
                .unwrap()
                .map(|s| IpAddr::V4(s.addr()))
                .collect(),
            ipnet::IpNet::V6(n) => n
                .subnets(128)
                .unwrap()
                .map(|s| IpAddr::V6(s.addr()))
                .collect(),
        }
    }
}

async fn check(ipam: &Ipam, pool: &Pool, model: &Model) {
    let host = |a: &trellis_ipam::Allocation| usize::from(a.host() == "h1");
    let usage = ipam.usage("p").await.unwrap();
    assert_eq!(usage.used, model.len() as u128);
    assert_eq!(usage.used + usage.free, pool.capacity() - usage.reserved);
    assert_eq!(usage.reserved, pool.reserved().len() as u128);
    let all = ipam.check_leaks(&HashSet::new()).await.unwrap();
    let stored: Model = all
        .into_iter()
        .map(|a| (a.ip, (a.handle.clone(), host(&a))))
        .collect();
    assert_eq!(&stored, model);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_sequences_never_double_allocate(spec in pool_spec(), ops in prop::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
            let ipams = [Ipam::new(store.clone(), "h0"), Ipam::new(store, "h1")];
            let pool = ipams[0].create_pool(spec).await.unwrap();
            let mut model = Model::new();
            for op in ops {
                apply(&ipams, &pool, &mut model, op).await;
                check(&ipams[0], &pool, &model).await;
            }
        });
    }
}
