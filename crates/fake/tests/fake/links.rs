//! Links: namespaces, bridges, veth pairs and what goes with them.

use crate::util::{bridge, bridged, container, iface, ifn, veth};
use trellis_fake::{FakeKernel, LinkKind};
use trellis_link::{ContainerRoute, LinkError, LinkRef, Links, Ns, container_mac};
use trellis_route::Routes;
use trellis_types::NetnsPath;

#[tokio::test]
async fn only_registered_paths_are_namespaces_and_host_aliases_are_the_host() {
    let k = FakeKernel::new();
    let c1 = k.add_netns("/run/netns/c1");
    let init = k.add_host_netns_path("/proc/1/ns/net");
    let id = k.check_netns(&c1).unwrap();
    let host = k.check_netns(&init).unwrap();
    assert_ne!(id, host);
    assert!(k.reserved_netns().iter().any(|r| r.id == host));
    let nowhere = NetnsPath::parse("netns", "/run/netns/nowhere").unwrap();
    let Err(LinkError::Invalid(bad)) = k.check_netns(&nowhere) else {
        panic!("an unknown path must be invalid input")
    };
    assert_eq!(bad.field, "netns");
    let err = k
        .create_veth(&veth("tr0000000000001", &nowhere, None))
        .await;
    assert!(matches!(err, Err(LinkError::Invalid(_))), "{err:?}");
    assert!(k.is_empty_of_trellis(), "{:?}", k.trellis_leftovers());
}

#[tokio::test]
async fn ensure_bridge_is_idempotent_and_refuses_a_non_bridge() {
    let k = FakeKernel::new();
    let spec = bridge("br0", "192.168.169.1/24");
    let first = k.ensure_bridge(&spec).await.unwrap();
    let before = k.snapshot();
    assert_eq!(k.ensure_bridge(&spec).await.unwrap(), first);
    assert_eq!(k.snapshot(), before, "a second ensure changes nothing");
    let br = k.link(&Ns::Host, "br0").unwrap();
    assert!(br.up && br.kind == LinkKind::Bridge);
    assert_eq!(br.addresses, vec!["192.168.169.1/24".parse().unwrap()]);
    let connected = k.main_table(&Ns::Host);
    assert!(
        connected
            .iter()
            .any(|h| h.route.dst == "192.168.169.0/24".parse().unwrap()
                && h.protocol == trellis_fake::RTPROT_KERNEL),
        "{connected:?}"
    );
    k.add_device(&Ns::Host, "eth0", &["10.1.253.101/24"]);
    let err = k.ensure_bridge(&bridge("eth0", "10.9.0.1/24")).await;
    assert!(matches!(err, Err(LinkError::NotABridge { .. })), "{err:?}");
}

#[tokio::test]
async fn a_veth_is_born_in_the_container_enslaved_and_names_are_checked_on_both_sides() {
    let (k, c1, info) = bridged().await;
    let host = k.link(&Ns::Host, "tr0000000000001").unwrap();
    let br = k.link(&Ns::Host, "br0").unwrap();
    assert_eq!(
        (host.master, host.up, host.hairpin),
        (Some(br.index), true, true)
    );
    assert_eq!(
        k.sysctl(&Ns::Host, "ipv6/conf/tr0000000000001/disable_ipv6")
            .as_deref(),
        Some("1")
    );
    let peer = k.link(&container(&c1), "eth0").unwrap();
    assert_eq!(peer.index, info.container_ifindex);
    assert_eq!(peer.mac, container_mac(&ifn("tr0000000000001")));
    assert!(!peer.up, "the peer waits for setup_container");
    let taken = k.create_veth(&veth("tr0000000000001", &c1, None)).await;
    assert!(
        matches!(taken, Err(LinkError::AlreadyExists { ref name }) if name == "tr0000000000001")
    );
    let taken = k.create_veth(&veth("tr0000000000002", &c1, None)).await;
    let Err(LinkError::AlreadyExists { name }) = taken else {
        panic!("{taken:?}")
    };
    assert_eq!(name, "eth0 in /run/netns/c1");
    let no_bridge = k
        .create_veth(&veth("tr0000000000003", &c1, Some("br9")))
        .await;
    assert!(
        matches!(no_bridge, Err(LinkError::NotFound { .. })),
        "{no_bridge:?}"
    );
}

#[tokio::test]
async fn container_routes_need_a_reachable_gateway_so_their_order_matters() {
    let k = FakeKernel::new();
    let c1 = k.add_netns("/run/netns/c1");
    k.create_veth(&veth("tr0000000000001", &c1, None))
        .await
        .unwrap();
    let gw = trellis_route::ROUTED_GATEWAY_V4.into();
    let wrong = [ContainerRoute::default_via(gw), ContainerRoute::on_link(gw)];
    let before = k.snapshot();
    let err = k.setup_container(&iface(&c1, "10.8.0.5/32"), &wrong).await;
    let Err(LinkError::Kernel(e)) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.errno(), Some(nix::errno::Errno::ENETUNREACH));
    assert_eq!(k.snapshot(), before, "a failed call changes nothing");
    let right = [ContainerRoute::on_link(gw), ContainerRoute::default_via(gw)];
    k.setup_container(&iface(&c1, "10.8.0.5/32"), &right)
        .await
        .unwrap();
    let eth0 = k.link(&container(&c1), "eth0").unwrap();
    assert!(eth0.up && !eth0.ipv6);
    assert!(k.link(&container(&c1), "lo").unwrap().up);
    assert_eq!(k.list_routes(&container(&c1)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn deleting_the_host_end_takes_the_peer_routes_and_neighbours_along() {
    let (k, c1, _) = bridged().await;
    k.setup_container_iface(&iface(&c1, "192.168.169.2/24"))
        .await
        .unwrap();
    let host_if = ifn("tr0000000000001");
    let route = trellis_route::Route::on_link("10.8.0.5/32".parse().unwrap(), host_if.clone());
    k.add_routes(&Ns::Host, &[route]).await.unwrap();
    let n = trellis_route::Neighbour {
        ip: "10.8.0.5".parse().unwrap(),
        mac: [2; 6],
        dev: host_if.clone(),
    };
    k.add_neighbours(&Ns::Host, &[n]).await.unwrap();
    k.delete_link(&host_if).await.unwrap();
    k.delete_link(&host_if).await.unwrap(); // already gone is done
    assert!(k.link(&container(&c1), "eth0").is_none());
    assert!(k.routes(&Ns::Host).is_empty() && k.neighbours(&Ns::Host).is_empty());
    assert!(
        k.sysctl(&Ns::Host, "ipv6/conf/tr0000000000001/disable_ipv6")
            .is_none()
    );
    let left = k.trellis_leftovers();
    assert_eq!(left.len(), 1, "only the bridge: {left:?}");
}

#[tokio::test]
async fn removing_a_namespace_removes_its_veths_host_ends() {
    let (k, c1, _) = bridged().await;
    assert!(k.remove_netns(&c1));
    assert!(k.link(&Ns::Host, "tr0000000000001").is_none());
    assert!(k.check_netns(&c1).is_err());
    assert!(!k.remove_netns(&c1));
}

#[tokio::test]
async fn batched_delete_ignores_missing_links_and_frees_bridge_ports() {
    let (k, c1, _) = bridged().await;
    let c2 = k.add_netns("/run/netns/c2");
    k.create_veth(&veth("tr0000000000002", &c2, Some("br0")))
        .await
        .unwrap();
    k.delete_links(&[ifn("br0"), ifn("tr0000000000009")])
        .await
        .unwrap();
    let port = k.link(&Ns::Host, "tr0000000000002").unwrap();
    assert_eq!((port.master, port.hairpin), (None, false));
    k.delete_links(&[ifn("tr0000000000001"), ifn("tr0000000000002")])
        .await
        .unwrap();
    assert!(k.is_empty_of_trellis(), "{:?}", k.trellis_leftovers());
    assert_eq!(k.links(&container(&c1)).len(), 1, "only lo");
}

#[tokio::test]
async fn listings_addresses_and_missing_links() {
    let (k, c1, info) = bridged().await;
    let listed = k.list_links_with_prefix(&Ns::Host, "tr").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].kind.as_deref(), listed[0].link),
        (Some("veth"), Some(info.container_ifindex))
    );
    let c = container(&c1);
    let missing = LinkRef::Name(ifn("eth9"));
    let err = k
        .add_address(&c, &missing, "10.0.0.1/24".parse().unwrap())
        .await;
    assert!(matches!(err, Err(LinkError::NotFound { .. })), "{err:?}");
    assert!(k.link_exists(&c, &ifn("eth0")).await.unwrap());
    let addrs = k.host_addresses().await.unwrap();
    assert!(addrs.iter().any(|a| a.dev == "br0"), "{addrs:?}");
    assert!(addrs.iter().any(|a| a.dev == "lo"), "{addrs:?}");
    let (summary, addresses) = k.link_detail(&Ns::Host, &ifn("br0")).unwrap();
    assert_eq!(
        (summary.kind.as_deref(), addresses.len()),
        (Some("bridge"), 1)
    );
}

#[tokio::test]
async fn host_listeners_are_found_as_a_bind_probe_would() {
    use trellis_link::{Listener, WantedPort};
    use trellis_types::Protocol;
    let k = FakeKernel::new();
    k.add_listener(Listener {
        protocol: Protocol::Tcp,
        local: "0.0.0.0:22".parse().unwrap(),
    });
    k.add_listener(Listener {
        protocol: Protocol::Udp,
        local: "[::]:53".parse().unwrap(),
    });
    let want = |protocol, host_ip: Option<&str>, port| WantedPort {
        protocol,
        host_ip: host_ip.map(|s| s.parse().unwrap()),
        port,
    };
    let found = k
        .host_listeners(&[
            want(Protocol::Tcp, None, 22),
            want(Protocol::Tcp, Some("127.0.0.1"), 22),
            want(Protocol::Udp, None, 53),
            want(Protocol::Tcp, None, 80),
            want(Protocol::Udp, Some("::1"), 22),
        ])
        .await
        .unwrap();
    let locals: Vec<String> = found.iter().map(|l| l.local.to_string()).collect();
    assert_eq!(locals, ["0.0.0.0:22", "127.0.0.1:22", "0.0.0.0:53"]);
}
