//! NAT and the host firewall: NftNat's conflict rules on a NatState.

use crate::util::ifn;
use trellis_fake::FakeKernel;
use trellis_nat::{Admitted, Error, HostFirewall, Nat, NatState, NetworkNat, RoutedPool};
use trellis_types::{PortMapping, Protocol};

fn net(subnet: &str, bridge: &str) -> NetworkNat {
    NetworkNat {
        subnet: subnet.parse().unwrap(),
        bridge: ifn(bridge),
        masquerade: true,
        internal: false,
    }
}

fn tcp(host_port: u32, container: &str) -> PortMapping {
    PortMapping::new(Protocol::Tcp, host_port, container.parse().unwrap(), 80).unwrap()
}

#[tokio::test]
async fn nothing_works_before_ensure_table_but_unpublish_and_remove_all() {
    let k = FakeKernel::new();
    assert!(matches!(
        k.publish(&[tcp(8081, "10.0.0.2")]).await,
        Err(Error::NoTable(_))
    ));
    assert!(matches!(k.list_networks().await, Err(Error::NoTable(_))));
    k.unpublish(&[tcp(8081, "10.0.0.2")]).await.unwrap();
    k.remove_all().await.unwrap();
    k.ensure_table().await.unwrap();
    assert_eq!(k.nat(), Some(NatState::default()));
    assert!(
        !k.is_empty_of_trellis(),
        "an empty table is still trellis's"
    );
    k.remove_all().await.unwrap();
    assert!(k.is_empty_of_trellis());
}

#[tokio::test]
async fn a_taken_port_is_refused_and_nothing_of_the_request_is_applied() {
    let k = FakeKernel::new();
    k.ensure_table().await.unwrap();
    let a = tcp(8081, "10.0.0.2");
    k.publish(&[a]).await.unwrap();
    let b = tcp(8082, "10.0.0.3");
    let clash = tcp(8081, "10.0.0.3");
    let err = k.publish(&[b, clash]).await.unwrap_err();
    assert!(
        matches!(err, Error::PortInUse { host_port: 8081, existing: Some(e), .. } if e == a),
        "{err:?}"
    );
    assert_eq!(k.list_published().await.unwrap(), [a]);
    let on_lo = tcp(8081, "10.0.0.3").on(Some("127.0.0.1".parse().unwrap()));
    assert!(
        matches!(k.publish(&[on_lo]).await, Err(Error::PortInUse { .. })),
        "one address against all"
    );
    let v6 = tcp(8081, "fd00::3");
    k.publish(&[v6]).await.unwrap();
    k.unpublish(&[tcp(8081, "10.0.0.9"), a]).await.unwrap();
    assert_eq!(
        k.list_published().await.unwrap(),
        [v6],
        "only exact matches go"
    );
}

#[tokio::test]
async fn overlapping_subnets_and_pools_are_refused_naming_the_field() {
    let k = FakeKernel::new();
    k.ensure_table().await.unwrap();
    k.add_network(&net("10.0.0.0/16", "br0")).await.unwrap();
    let Err(Error::Invalid(e)) = k.add_network(&net("10.0.1.0/24", "br1")).await else {
        panic!()
    };
    assert_eq!(e.field, "subnet");
    let internal = NetworkNat {
        internal: true,
        ..net("10.0.0.0/16", "br0")
    };
    k.add_network(&internal).await.unwrap();
    assert_eq!(
        k.list_networks().await.unwrap(),
        std::slice::from_ref(&internal),
        "an update"
    );
    let pool = |c: &str| RoutedPool {
        cidr: c.parse().unwrap(),
        nat_outgoing: true,
    };
    k.add_pool(&pool("10.244.0.0/16")).await.unwrap();
    let Err(Error::Invalid(e)) = k.add_pool(&pool("10.244.7.0/24")).await else {
        panic!()
    };
    assert_eq!(e.field, "cidr");
    k.set_reach(&[(ifn("br0"), ifn("br1")), (ifn("br0"), ifn("br0"))])
        .await
        .unwrap();
    assert_eq!(k.list_reach().await.unwrap(), [(ifn("br0"), ifn("br1"))]);
    k.remove_network(&internal).await.unwrap();
    k.remove_pool(&pool("10.244.0.0/16")).await.unwrap();
    let st = k.nat().unwrap();
    assert!(st.networks.is_empty() && st.pools.is_empty());
}

#[tokio::test]
async fn sync_replaces_everything_after_the_same_checks() {
    let k = FakeKernel::new();
    let bad = NatState {
        networks: vec![net("10.0.0.0/16", "br0"), net("10.0.0.0/24", "br1")],
        ..NatState::default()
    };
    assert!(matches!(k.sync(&bad).await, Err(Error::Invalid(_))));
    assert_eq!(k.nat(), None, "nothing was applied");
    let good = NatState {
        networks: vec![net("10.1.0.0/16", "br1"), net("10.0.0.0/16", "br0")],
        ports: vec![tcp(80, "10.0.0.2")],
        ..NatState::default()
    };
    k.sync(&good).await.unwrap();
    assert_eq!(
        k.list_networks().await.unwrap()[0].bridge,
        ifn("br0"),
        "sorted"
    );
}

#[tokio::test]
async fn the_host_firewall_is_amended_only_where_it_drops() {
    let k = FakeKernel::new();
    let web = Admitted::Bridge {
        network: "web".into(),
        bridge: ifn("br0"),
        v4: true,
        v6: false,
    };
    assert!(
        k.admit(std::slice::from_ref(&web))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(k.admitted().is_empty(), "nothing drops: nothing to amend");
    k.set_host_firewall_drops(true);
    assert_eq!(
        k.check_admitted(std::slice::from_ref(&web))
            .await
            .unwrap()
            .len(),
        1
    );
    k.admit(&[web.clone(), web.clone()]).await.unwrap();
    assert_eq!(k.admitted(), std::slice::from_ref(&web));
    assert!(
        k.check_admitted(std::slice::from_ref(&web))
            .await
            .unwrap()
            .is_empty()
    );
    k.flush_host_firewall();
    assert_eq!(
        k.check_admitted(&[web]).await.unwrap().len(),
        1,
        "a reload lost them"
    );
}
