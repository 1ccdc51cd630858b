//! Routes and neighbours: tags, checks, read-back and peer routes.

use crate::util::{bridged, container, ifn, ip, veth};
use trellis_fake::FakeKernel;
use trellis_link::{Links, Ns};
use trellis_route::{Neighbour, PeerRoute, Route, RouteError, RoutedEndpoint, Routes};

#[tokio::test]
async fn routes_are_checked_first_and_a_missing_device_is_named() {
    let (k, _, _) = bridged().await;
    let good = Route::on_link("10.8.0.5/32".parse().unwrap(), ifn("tr0000000000001"));
    let missing = Route::on_link("10.8.0.6/32".parse().unwrap(), ifn("nope0"));
    let err = k.add_routes(&Ns::Host, &[good.clone(), missing]).await;
    let Err(RouteError::NoSuchDevice { dev, ns }) = err else {
        panic!("{err:?}")
    };
    assert_eq!((dev.as_str(), ns.as_str()), ("nope0", "host netns"));
    assert!(
        k.routes(&Ns::Host).is_empty(),
        "all are checked before any is added"
    );
    let host_bits = Route::blackhole("10.8.0.1/26".parse().unwrap());
    let err = k.add_routes(&Ns::Host, &[host_bits]).await;
    assert!(
        matches!(err, Err(RouteError::Invalid(ref e)) if e.field == "dst"),
        "{err:?}"
    );
    k.add_routes(&Ns::Host, &[good.clone(), good.clone()])
        .await
        .unwrap();
    assert_eq!(
        k.routes(&Ns::Host),
        std::slice::from_ref(&good),
        "create or replace"
    );
    k.delete_routes(&Ns::Host, &[good.clone(), good])
        .await
        .unwrap();
    assert!(k.routes(&Ns::Host).is_empty());
}

#[tokio::test]
async fn only_trellis_routes_are_listed_and_read_back_as_the_kernel_reports_them() {
    let k = FakeKernel::new();
    k.add_device(&Ns::Host, "eth0", &["10.1.253.101/24", "fd00:1::101/64"]);
    k.add_route(
        &Ns::Host,
        Route::default_via(ip("10.1.253.1"), ifn("eth0")),
        4,
    );
    let bh6 = Route::blackhole("fd00:8::/64".parse().unwrap());
    k.add_routes(&Ns::Host, std::slice::from_ref(&bh6))
        .await
        .unwrap();
    let listed = k.list_routes(&Ns::Host).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].metric,
        Some(1024),
        "an IPv6 route reads back with its metric"
    );
    let all = k.host_routes().await.unwrap();
    assert_eq!(
        all.len(),
        4,
        "static default, blackhole, two connected: {all:?}"
    );
    assert!(all.iter().filter(|h| h.is_connected()).count() == 2);
    k.delete_routes(&Ns::Host, &[bh6]).await.unwrap();
    assert!(k.list_routes(&Ns::Host).await.unwrap().is_empty());
}

#[tokio::test]
async fn routed_host_side_in_one_call_and_gone_with_the_veth() {
    let k = FakeKernel::new();
    let c1 = k.add_netns("/run/netns/c1");
    let info = k
        .create_veth(&veth("tr0000000000001", &c1, None))
        .await
        .unwrap();
    let ep = RoutedEndpoint {
        host_if: ifn("tr0000000000001"),
        host_ifindex: info.host_ifindex,
        addresses: vec![ip("10.8.0.5"), ip("fd00:8::5")],
        container_mac: info.container_mac,
    };
    k.setup_routed_host(&ep).await.unwrap();
    k.setup_routed_host(&ep).await.unwrap(); // idempotent
    assert_eq!(k.routes(&Ns::Host).len(), 2);
    assert_eq!(k.neighbours(&Ns::Host), ep.neighbours());
    assert_eq!(
        k.sysctl(&Ns::Host, "ipv4/conf/tr0000000000001/proxy_arp")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        k.sysctl(&Ns::Host, "ipv6/conf/tr0000000000001/accept_ra")
            .as_deref(),
        Some("0")
    );
    let port = k.link(&Ns::Host, "tr0000000000001").unwrap();
    assert_eq!(
        port.addresses.len(),
        2,
        "169.254.1.1/32 and fe80::ecee:eeff:feee:eeee/64"
    );
    let empty = RoutedEndpoint {
        addresses: vec![],
        ..ep
    };
    assert!(matches!(
        k.setup_routed_host(&empty).await,
        Err(RouteError::Invalid(_))
    ));
    k.delete_link(&ifn("tr0000000000001")).await.unwrap();
    assert!(k.is_empty_of_trellis(), "{:?}", k.trellis_leftovers());
    assert!(k.links(&container(&c1)).len() == 1);
}

#[tokio::test]
async fn neighbours_need_their_device_and_deletes_are_idempotent() {
    let (k, _, _) = bridged().await;
    let n = |dev: &str| Neighbour {
        ip: ip("10.8.0.5"),
        mac: [2; 6],
        dev: ifn(dev),
    };
    let err = k.add_neighbours(&Ns::Host, &[n("nope0")]).await;
    assert!(
        matches!(err, Err(RouteError::NoSuchDevice { .. })),
        "{err:?}"
    );
    k.add_neighbours(&Ns::Host, &[n("br0"), n("br0")])
        .await
        .unwrap();
    assert_eq!(k.neighbours(&Ns::Host).len(), 1);
    k.delete_neighbours(&Ns::Host, &[n("br0"), n("nope0")])
        .await
        .unwrap();
    k.delete_neighbours(&Ns::Host, &[n("br0")]).await.unwrap();
    assert!(k.neighbours(&Ns::Host).is_empty());
}

#[tokio::test]
async fn peer_routes_are_declarative_and_need_a_reachable_gateway() {
    let k = FakeKernel::new();
    let p = |block: &str, via: &str| PeerRoute {
        block: block.parse().unwrap(),
        via: ip(via),
    };
    let err = k.set_peer_routes(&[p("10.8.1.0/26", "10.1.253.102")]).await;
    assert!(
        matches!(err, Err(RouteError::Kernel(_))),
        "no underlay yet: {err:?}"
    );
    k.add_device(&Ns::Host, "eth0", &["10.1.253.101/24"]);
    let first = [
        p("10.8.1.0/26", "10.1.253.102"),
        p("10.8.2.0/26", "10.1.253.103"),
    ];
    let changes = k.set_peer_routes(&first).await.unwrap();
    assert_eq!((changes.added.len(), changes.removed.len()), (2, 0));
    let second = [p("10.8.1.0/26", "10.1.253.104")];
    let changes = k.set_peer_routes(&second).await.unwrap();
    assert_eq!(
        (changes.added, changes.removed),
        (second.to_vec(), vec![first[1]])
    );
    assert_eq!(k.list_peer_routes().await.unwrap(), second);
    let twice = [
        p("10.8.1.0/26", "10.1.253.102"),
        p("10.8.1.0/26", "10.1.253.103"),
    ];
    assert!(matches!(
        k.set_peer_routes(&twice).await,
        Err(RouteError::Invalid(_))
    ));
}
