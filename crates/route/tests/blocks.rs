//! Blocks a host owns (blackholed) and blocks other hosts own (peer routes).

use crate::util::RoutedLab;
use std::net::SocketAddr;
use trellis_route::*;
use trellis_testlab::{Netns, TcpServer, seen_ip, tcp_request};

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn an_owned_block_is_blackholed_but_its_endpoints_and_borrowed_addresses_work() {
    let lab = RoutedLab::new().await;
    let upstream = lab.add_upstream();
    let (a, c) = (Netns::new("pa"), Netns::new("pc"));
    lab.attach("tr00000000000d1", &a, &["10.8.0.2"]).await;
    // From another host's block, attached here: no blackhole covers it.
    lab.attach("tr00000000000d2", &c, &["10.9.5.7"]).await;
    // An unassigned address of the owned block, as seen from upstream: what
    // the default route would reach if nothing stopped it here.
    upstream.ip("addr add 10.8.0.50/32 dev lo");
    upstream.ip("route add 10.8.0.0/16 via 10.77.0.1");
    let leak = TcpServer::start(&upstream, sock("10.8.0.50", 7401), "upstream");
    tcp_request(&a, leak.addr()).expect("without the blackhole it leaks upstream");

    let block = Route::blackhole("10.8.0.0/26".parse().unwrap());
    lab.routes
        .add_routes(&Ns::Host, std::slice::from_ref(&block))
        .await
        .unwrap();
    let got = lab.host.ip("route get 10.8.0.2");
    assert!(
        got.contains("dev tr00000000000d1"),
        "the /32 beats the block: {got}"
    );
    tcp_request(&a, leak.addr()).expect_err("dropped at the host");

    // Longest prefix wins: the /32 inside the block, and the borrowed one.
    let on_a = TcpServer::start(&a, sock("10.8.0.2", 7402), "a");
    let reply = tcp_request(&c, on_a.addr()).expect("borrowed → owned block");
    assert_eq!(seen_ip(&reply).to_string(), "10.9.5.7", "{reply}");
    let on_c = TcpServer::start(&c, sock("10.9.5.7", 7403), "c");
    let reply = tcp_request(&a, on_c.addr()).expect("owned block → borrowed");
    assert_eq!(seen_ip(&reply).to_string(), "10.8.0.2", "{reply}");
    let from_up = tcp_request(&upstream, on_a.addr()).expect("upstream → endpoint");
    assert_eq!(seen_ip(&from_up).to_string(), "10.77.0.2", "{from_up}");
    assert!(
        lab.host
            .ip("route show proto 116")
            .contains("blackhole 10.8.0.0/26")
    );
}

fn peer(block: &str, via: &str) -> PeerRoute {
    PeerRoute {
        block: block.parse().unwrap(),
        via: via.parse().unwrap(),
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn peer_routes_are_set_declaratively_and_nothing_else_is_touched() {
    let lab = RoutedLab::new().await;
    let _upstream = lab.add_upstream();
    lab.host.ip("-6 addr add fd00:77::1/64 dev up0 nodad");
    let pod = Netns::new("pa");
    lab.attach("tr00000000000e1", &pod, &["10.8.0.2"]).await;
    let owned = Route::blackhole("10.8.0.0/26".parse().unwrap());
    lab.routes
        .add_routes(&Ns::Host, std::slice::from_ref(&owned))
        .await
        .unwrap();
    lab.host.ip("route add 10.99.0.0/16 via 10.77.0.2");

    let mut want = vec![
        peer("10.8.1.0/26", "10.77.0.2"),
        peer("10.8.2.0/26", "10.77.0.3"),
        peer("fd00:8:1::/80", "fd00:77::2"),
    ];
    let changes = lab.routes.set_peer_routes(&want).await.unwrap();
    assert_eq!((changes.added.len(), changes.removed.len()), (3, 0));
    let mut listed = lab.routes.list_peer_routes().await.unwrap();
    listed.sort();
    assert_eq!(listed, want);
    let shown = lab.host.ip("route show proto 116");
    assert!(
        shown.contains("10.8.1.0/26 via 10.77.0.2 dev up0"),
        "{shown}"
    );
    assert_eq!(
        lab.routes.set_peer_routes(&want).await.unwrap(),
        PeerRouteChanges::default(),
        "idempotent"
    );

    // A peer moves, another leaves.
    want[0].via = "10.77.0.4".parse().unwrap();
    want.remove(1);
    let changes = lab.routes.set_peer_routes(&want).await.unwrap();
    assert_eq!(changes.added, vec![want[0]]);
    assert_eq!(changes.removed, vec![peer("10.8.2.0/26", "10.77.0.3")]);
    let mut listed = lab.routes.list_peer_routes().await.unwrap();
    listed.sort();
    assert_eq!(listed, want);

    lab.routes.set_peer_routes(&[]).await.unwrap();
    assert!(lab.routes.list_peer_routes().await.unwrap().is_empty());
    let shown = lab.host.ip("route");
    assert!(
        shown.contains("10.99.0.0/16 via 10.77.0.2")
            && shown.contains("blackhole 10.8.0.0/26")
            && shown.contains("10.8.0.2 dev tr00000000000e1"),
        "someone else's route, the owned block and the endpoint stay: {shown}"
    );

    let clash = [
        peer("10.8.1.0/26", "10.77.0.2"),
        peer("10.8.1.0/26", "10.77.0.3"),
    ];
    let err = lab.routes.set_peer_routes(&clash).await.unwrap_err();
    assert!(
        matches!(&err, RouteError::Invalid(i) if i.field == "desired"),
        "{err}"
    );
}
