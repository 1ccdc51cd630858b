//! The third-party routers of `trellis_testlab::routers`, checked against each
//! other: GoBGP originates IPv4 and IPv6 routes, and BIRD, FRR and GoBGP must
//! show them with the right next hop, mark them stale while GoBGP is down
//! (graceful restart), take them again after restarts, install them into
//! the namespace's kernel, and accept dynamic and MD5-signed peers.
//!
//! Each test builds its own namespaces, joined by veths: the router under
//! check at 10.99.0.2 / fd00:99::2, its GoBGP peer at 10.99.0.4 / fd00:99::4.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use trellis_testlab::{LearnedRoute, Neighbor, Netns, Router, RouterConfig, RouterKind};

const WITHIN: Duration = Duration::from_secs(30);
const ROUTER_AS: u32 = 65000;
const GOBGP_AS: u32 = 65001;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn router_ip() -> IpAddr {
    ip("10.99.0.2")
}

fn gobgp_ip() -> IpAddr {
    ip("10.99.0.4")
}

/// The router's namespace and its GoBGP peer's, joined by a veth.
fn link(role: &str) -> (Netns, Netns) {
    let router = Netns::new(role);
    let gobgp = Netns::new("gobgp");
    router.veth_to("r0", &gobgp, "g0");
    router.ip("addr add 10.99.0.2/24 dev r0");
    router.ip("addr add fd00:99::2/64 dev r0 nodad");
    gobgp.ip("addr add 10.99.0.4/24 dev g0");
    gobgp.ip("addr add fd00:99::4/64 dev g0 nodad");
    (router, gobgp)
}

fn router_config(kind: RouterKind) -> RouterConfig {
    RouterConfig::new(kind, Ipv4Addr::new(10, 99, 0, 2), ROUTER_AS, router_ip())
}

/// GoBGP at 10.99.0.4 peering with `peer`.
fn gobgp(ns: &Netns, peer: Neighbor) -> Router {
    let cfg = RouterConfig::new(
        RouterKind::Gobgp,
        Ipv4Addr::new(10, 99, 0, 4),
        GOBGP_AS,
        gobgp_ip(),
    )
    .neighbor(peer);
    Router::start(ns, cfg)
}

/// A route GoBGP announces.
struct Announced {
    prefix: IpNet,
    next_hop: IpAddr,
    communities: Vec<(u16, u16)>,
}

/// What GoBGP announces: IPv4 with a community, IPv6 (over the IPv4
/// session) with a reachable next hop, and IPv6 with one no router can
/// resolve — which must still be listed, with the next hop as sent.
fn announced() -> Vec<Announced> {
    let route = |prefix, next_hop, communities: &[(u16, u16)]| Announced {
        prefix: net(prefix),
        next_hop: ip(next_hop),
        communities: communities.to_vec(),
    };
    vec![
        route("10.20.0.0/24", "10.99.0.4", &[(65001, 7)]),
        route("fd00:20::/64", "fd00:99::4", &[]),
        route("fd00:21::/64", "fd00:77::9", &[]),
    ]
}

fn announce_all(gobgp: &Router) {
    for a in announced() {
        gobgp.announce(a.prefix, a.next_hop, &a.communities);
    }
}

/// Waits until `router` has every announced route, fresh, with GoBGP's AS
/// path and the communities.
fn assert_learned(router: &Router) {
    for a in announced() {
        let route = router.wait_for_route(a.prefix, a.next_hop, WITHIN);
        assert_eq!(route.as_path, vec![GOBGP_AS], "{route}");
        assert_eq!(route.communities, a.communities, "{route}");
    }
}

/// Whether every announced route is in `routes`, stale.
fn all_stale(routes: &[LearnedRoute]) -> bool {
    announced().iter().all(|a| {
        routes
            .iter()
            .any(|r| r.prefix == a.prefix && r.next_hop == a.next_hop && r.stale)
    })
}

/// The full cycle against one router kind: learn, crash GoBGP (routes
/// stale), bring it back (routes fresh), restart the router (routes back).
fn learns_keeps_stale_and_relearns(kind: RouterKind, role: &str) {
    let (rns, gns) = link(role);
    let mut router = Router::start(
        &rns,
        RouterConfig {
            install_kernel: true,
            ..router_config(kind).neighbor(Neighbor::new(gobgp_ip(), GOBGP_AS))
        },
    );
    let mut gobgp = gobgp(&gns, Neighbor::new(router_ip(), ROUTER_AS));
    announce_all(&gobgp);

    router.wait_established(gobgp_ip(), WITHIN);
    assert!(gobgp.established(router_ip()));
    assert_learned(&router);

    // Resolved routes reach the kernel; the unresolvable one does not.
    let v4 = rns.ip("route show 10.20.0.0/24");
    assert!(v4.contains("via 10.99.0.4"), "{v4}");
    let v6 = rns.ip("-6 route show fd00:20::/64");
    assert!(v6.contains("via fd00:99::4"), "{v6}");
    let unresolved = rns.ip("-6 route show fd00:21::/64");
    assert!(unresolved.trim().is_empty(), "{unresolved}");

    // A crash: no NOTIFICATION, so the router (GR helper) keeps the routes.
    gobgp.kill();
    router.wait_for("every route stale after GoBGP's crash", WITHIN, all_stale);
    assert!(!router.established(gobgp_ip()));
    let v4 = rns.ip("route show 10.20.0.0/24");
    assert!(
        v4.contains("via 10.99.0.4"),
        "stale routes stay in the kernel: {v4}"
    );

    // GoBGP returns (without preserved forwarding state) and re-announces.
    gobgp.restart();
    announce_all(&gobgp);
    router.wait_established(gobgp_ip(), WITHIN);
    assert_learned(&router);

    // The router itself restarts: same config, same namespace.
    router.restart();
    router.wait_established(gobgp_ip(), WITHIN);
    assert_learned(&router);
    let v6 = rns.ip("-6 route show fd00:20::/64");
    assert!(v6.contains("via fd00:99::4"), "{v6}");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: builds namespaces and runs BGP routers"
)]
#[test]
fn bird_learns_v4_and_v6_keeps_them_stale_through_a_crash_and_installs_them() {
    learns_keeps_stale_and_relearns(RouterKind::Bird, "bird");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: builds namespaces and runs BGP routers"
)]
#[test]
fn frr_learns_v4_and_v6_keeps_them_stale_through_a_crash_and_installs_them() {
    learns_keeps_stale_and_relearns(RouterKind::Frr, "frr");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: builds namespaces and runs BGP routers"
)]
#[test]
fn bird_frr_and_gobgp_accept_passive_dynamic_peers_and_keep_their_routes_stale() {
    // GoBGP connects to each (its first attempt comes 5-10 s after start, so
    // the three are brought up together).
    let kinds = [
        (RouterKind::Bird, "bird"),
        (RouterKind::Frr, "frr"),
        (RouterKind::Gobgp, "gobgpr"),
    ];
    let links: Vec<(Netns, Netns)> = kinds.iter().map(|(_, role)| link(role)).collect();
    let routers: Vec<Router> = kinds
        .iter()
        .zip(&links)
        .map(|((kind, _), (rns, _))| {
            Router::start(
                rns,
                router_config(*kind).neighbor_range(net("10.99.0.0/24"), GOBGP_AS),
            )
        })
        .collect();
    let mut originators: Vec<Router> = links
        .iter()
        .map(|(_, gns)| gobgp(gns, Neighbor::new(router_ip(), ROUTER_AS)))
        .collect();
    for g in &originators {
        announce_all(g);
    }
    for router in &routers {
        router.wait_established(gobgp_ip(), WITHIN);
        assert_learned(router);
    }

    // Graceful-restart helpers for dynamic peers too.
    for g in &mut originators {
        g.kill();
    }
    for router in &routers {
        router.wait_for(
            "routes stale after the dynamic peer crashed",
            WITHIN,
            all_stale,
        );
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: builds namespaces and runs BGP routers"
)]
#[test]
fn md5_signed_sessions_come_up_only_with_the_right_password() {
    let started = Instant::now();
    // (router, its GoBGP peer, passwords match, their namespaces): a tuple
    // drops its fields in order, so the routers go before the namespaces.
    let labs: Vec<_> = [
        (RouterKind::Bird, "bird", "trellis"),
        (RouterKind::Frr, "frr", "trellis"),
        (RouterKind::Bird, "birdbad", "wrong"),
    ]
    .into_iter()
    .map(|(kind, role, gobgp_password)| {
        let (rns, gns) = link(role);
        let router = Router::start(
            &rns,
            router_config(kind).neighbor(Neighbor::new(gobgp_ip(), GOBGP_AS).md5("trellis")),
        );
        let peer = Neighbor::new(router_ip(), ROUTER_AS).md5(gobgp_password);
        let gobgp = gobgp(&gns, peer);
        (router, gobgp, gobgp_password == "trellis", rns, gns)
    })
    .collect();
    for (router, gobgp, _, _, _) in labs.iter().filter(|lab| lab.2) {
        router.wait_established(gobgp_ip(), WITHIN);
        assert!(gobgp.established(router_ip()));
    }
    // BIRD connects after 1 s and retries every 2 s: give the mismatch time
    // to show.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(started.elapsed()));
    for (router, gobgp, _, _, _) in labs.iter().filter(|lab| !lab.2) {
        assert!(!router.established(gobgp_ip()), "{}", router.log());
        assert!(!gobgp.established(router_ip()));
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: builds namespaces and runs BGP routers"
)]
#[test]
fn a_router_is_killed_and_its_files_removed_on_drop_even_after_a_panic() {
    let (rns, _gns) = link("frr");
    let (pids, dir) = *std::panic::catch_unwind(|| {
        let cfg = router_config(RouterKind::Frr).neighbor(Neighbor::new(gobgp_ip(), GOBGP_AS));
        let router = Router::start(&rns, cfg);
        let pids = router.pids();
        assert_eq!(pids.len(), 2, "zebra and bgpd");
        // FRR's crash-log buffers land in the router's directory, not the host's.
        for (daemon, pid) in ["zebra", "bgpd"].iter().zip(&pids) {
            let own = router.dir().join(format!("var-tmp/frr/{daemon}.{pid}"));
            assert!(own.is_dir(), "{} missing", own.display());
            let host = format!("/var/tmp/frr/{daemon}.{pid}");
            assert!(!std::path::Path::new(&host).exists(), "{host} exists");
        }
        std::panic::panic_any((pids, router.dir().to_owned()));
    })
    .unwrap_err()
    .downcast::<(Vec<u32>, std::path::PathBuf)>()
    .expect("the panic carries the pids and the directory");
    assert!(!dir.exists(), "{} still exists", dir.display());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs"
        );
    }
}
