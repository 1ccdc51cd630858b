//! Property: random allocate / release / fixed-address sequences never give
//! one address to two handles, and the usage counts always add up.

use crate::util::{bridge, handle, spec};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use trellis_ipam::{Error, Ipam, Pool, PoolSpec, Reserve};
use trellis_store::MemoryStore;
use trellis_types::Handle;

#[derive(Debug, Clone)]
enum Op {
    Allocate(u8),
    Release(u8),
    Specific(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..40).prop_map(Op::Allocate),
        2 => (0u8..40).prop_map(Op::Release),
        1 => (0u8..40, 0u8..32).prop_map(|(h, o)| Op::Specific(h, o)),
    ]
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    prop_oneof![
        Just(bridge("p", "10.0.0.0/27", Some(29), "10.0.0.9")),
        Just(spec("p", "fd00::/123", Some(125), Reserve::None)),
    ]
}

/// The model: which handle holds each address.
type Model = BTreeMap<IpAddr, Handle>;

async fn apply(ipam: &Ipam, pool: &Pool, model: &mut Model, op: Op) {
    match op {
        Op::Allocate(h) => {
            let h = handle(&format!("c{h}"));
            let held: Vec<IpAddr> = model
                .iter()
                .filter(|(_, x)| **x == h)
                .map(|(ip, _)| *ip)
                .collect();
            let usable = pool.capacity() - pool.reserved().len() as u128;
            match ipam.allocate("p", &h).await {
                Ok(ip) if !held.is_empty() => {
                    assert!(held.contains(&ip), "{h} got {ip}, holds {held:?}")
                }
                Ok(ip) => {
                    assert!(!pool.is_reserved(ip), "{ip} is reserved");
                    assert!(model.insert(ip, h).is_none(), "{ip} handed out twice");
                }
                Err(Error::Exhausted { .. }) => {
                    assert_eq!(model.len() as u128, usable, "early exhaustion")
                }
                Err(e) => panic!("allocate: {e}"),
            }
        }
        Op::Release(h) => {
            let h = handle(&format!("c{h}"));
            let released = ipam.release(&h).await.unwrap();
            let ips: HashSet<IpAddr> = released.iter().map(|a| a.ip).collect();
            let held: HashSet<IpAddr> = model
                .iter()
                .filter(|(_, x)| **x == h)
                .map(|(ip, _)| *ip)
                .collect();
            assert_eq!(ips, held, "release of {h}");
            model.retain(|_, x| *x != h);
        }
        Op::Specific(h, offset) => {
            let h = handle(&format!("c{h}"));
            let ip = pool
                .blocks()
                .flat_map(|b| b.hosts_all())
                .nth(usize::from(offset))
                .unwrap();
            match ipam.allocate_specific("p", &h, ip).await {
                Ok(()) => assert!(model.insert(ip, h.clone()).is_none_or(|x| x == h)),
                Err(Error::AddressTaken { holder, .. }) => {
                    assert_eq!(model.get(&ip), Some(&holder))
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
    let usage = ipam.usage("p").await.unwrap();
    assert_eq!(usage.used, model.len() as u128);
    assert_eq!(usage.used + usage.free, pool.capacity() - usage.reserved);
    assert_eq!(usage.reserved, pool.reserved().len() as u128);
    let all = ipam.check_leaks(&HashSet::new()).await.unwrap();
    let stored: Model = all.into_iter().map(|a| (a.ip, a.handle)).collect();
    assert_eq!(&stored, model);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_sequences_never_double_allocate(spec in pool_spec(), ops in prop::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let ipam = Ipam::new(Arc::new(MemoryStore::new()), "h1");
            let pool = ipam.create_pool(spec).await.unwrap();
            let mut model = Model::new();
            for op in ops {
                apply(&ipam, &pool, &mut model, op).await;
                check(&ipam, &pool, &model).await;
            }
        });
    }
}
