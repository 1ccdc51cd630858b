//! BGP export end to end: trellisd in a host namespace, peering with BIRD 2,
//! FRR and GoBGP (Debian's) in a router namespace — the routes land with the
//! right next hops (IPv4 and IPv6 over one IPv4 session), a block given back
//! is withdrawn, a router restart brings session and routes back; a trellisd
//! restart is a graceful restart that loses no traffic from a PC behind the
//! router; a frozen router is detected by the hold timer; a scripted peer's
//! malformed UPDATEs get treat-as-withdraw or the right NOTIFICATION.
//!
//! ```text
//!  pc 10.98.0.2 ── 10.98.0.1 router 10.99.0.2 ── 10.99.0.1 host (trellisd)
//!                   (BIRD/FRR/GoBGP)  fd00:99::2    fd00:99::1   └─ c1, c2 (routed)
//! ```

use crate::util::{Daemon, rss_kib};
use ipnet::IpNet;
use nix::sys::signal::Signal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use trellis_proto::v1::{
    AgentClient, AttachRequest, BgpClient, BgpPeer, CreateNetworkRequest, DeleteNetworkRequest,
    DetachRequest, ListBgpPeersRequest, ListBgpRoutesRequest, NetworkMode, NetworkSpec,
};
use trellis_proto::{channel_unix, connect_unix};
use trellis_testlab::routers::{Neighbor, Router, RouterConfig, RouterKind};
use trellis_testlab::{Counts, Netns, TcpServer, require_root, tcp_traffic};

const HOST: &str = "10.99.0.1";
const HOST6: &str = "fd00:99::1";
const ROUTER: &str = "10.99.0.2";
const OUR_AS: u32 = 4_200_000_002;
const ROUTER_AS: u32 = 65000;
const WAIT: Duration = Duration::from_secs(30);

struct Lab {
    host: Netns,
    router: Netns,
    pc: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn build() -> Lab {
        require_root();
        let host = Netns::new("bgph");
        let router = Netns::new("bgpr");
        let pc = Netns::new("bgpp");
        host.veth_to("up0", &router, "down0");
        host.ip(&format!("addr add {HOST}/24 dev up0"));
        host.ip(&format!("addr add {HOST6}/64 dev up0 nodad"));
        host.ip(&format!("route add default via {ROUTER}"));
        router.ip(&format!("addr add {ROUTER}/24 dev down0"));
        router.ip("addr add fd00:99::2/64 dev down0 nodad");
        router.veth_to("pc0", &pc, "eth0");
        router.ip("addr add 10.98.0.1/24 dev pc0");
        router.sysctl("net.ipv4.ip_forward", "1");
        pc.ip("addr add 10.98.0.2/24 dev eth0");
        pc.ip("route add default via 10.98.0.1");
        Lab {
            host,
            router,
            pc,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, peer_passive: bool) -> std::path::PathBuf {
        let path = self.dir.path().join("trellisd.toml");
        let peer = if peer_passive {
            format!("[[bgp.peers]]\naddress = \"{ROUTER}\"\nasn = {ROUTER_AS}\npassive = true\n")
        } else {
            format!("[[bgp.peers]]\naddress = \"{ROUTER}\"\nasn = {ROUTER_AS}\n")
        };
        std::fs::write(
            &path,
            format!(
                "[bgp]\nasn = {OUR_AS}\nrouter_id = \"{HOST}\"\nhold_time = 9\n\
                 next_hop_v6 = \"{HOST6}\"\nlisten = \"{HOST}:179\"\n\
                 communities = [\"65000:42\"]\n{peer}"
            ),
        )
        .unwrap();
        path
    }

    fn trellisd(&self, passive_peer: bool) -> Daemon {
        self.trellisd_with(passive_peer, "")
    }

    /// trellisd with the router as a peer and `extra` appended to its
    /// config file (more `[[bgp.peers]]`).
    fn trellisd_with(&self, passive_peer: bool, extra: &str) -> Daemon {
        let config = self.config(passive_peer);
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        let mut d = Daemon::start(
            &self.host,
            self.dir.path(),
            &["--config", config.to_str().unwrap()],
        );
        d.wait_ready();
        d
    }

    fn router(&self, kind: RouterKind, install_kernel: bool) -> Router {
        let mut cfg = RouterConfig::new(
            kind,
            ROUTER.parse().unwrap(),
            ROUTER_AS,
            ROUTER.parse().unwrap(),
        )
        .neighbor(Neighbor::new(HOST.parse().unwrap(), OUR_AS).passive());
        cfg.install_kernel = install_kernel;
        Router::start(&self.router, cfg)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn agent(d: &Daemon) -> AgentClient<Channel> {
    connect_unix(&d.socket).await.expect("connect")
}

async fn bgp(d: &Daemon) -> BgpClient<Channel> {
    BgpClient::new(channel_unix(&d.socket).await.expect("connect"))
}

/// A routed dual-stack network and a container on it; its IPv4 address.
async fn routed_container(a: &mut AgentClient<Channel>, c: &Netns, id: &str) -> IpAddr {
    let spec = NetworkSpec {
        name: "pods".into(),
        mode: NetworkMode::Routed as i32,
        subnets: vec!["10.244.0.0/16".into(), "fd00:244::/48".into()],
        ..Default::default()
    };
    let _ = a
        .create_network(CreateNetworkRequest { spec: Some(spec) })
        .await;
    let ep = a
        .attach(AttachRequest {
            network: "pods".into(),
            container_id: id.into(),
            netns: c.path_str(),
            ifname: "eth0".into(),
            ..Default::default()
        })
        .await
        .expect("attach")
        .into_inner();
    ep.addresses
        .iter()
        .map(|s| s.split('/').next().unwrap().parse::<IpAddr>().unwrap())
        .find(IpAddr::is_ipv4)
        .expect("an IPv4 address")
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// The one peer trellisd has (`None`), or the peer at the address given.
async fn peer_of(b: &mut BgpClient<Channel>, address: Option<&str>) -> BgpPeer {
    let mut l = b
        .list_peers(ListBgpPeersRequest {})
        .await
        .expect("list peers")
        .into_inner()
        .peers;
    match address {
        None => {
            assert_eq!(l.len(), 1, "{l:?}");
            l.remove(0)
        }
        Some(a) => l
            .into_iter()
            .find(|p| p.config.as_ref().is_some_and(|c| c.address == a))
            .unwrap_or_else(|| panic!("no peer {a}")),
    }
}

async fn peer(b: &mut BgpClient<Channel>) -> BgpPeer {
    peer_of(b, None).await
}

/// The peer at `address`.
async fn peer_at(b: &mut BgpClient<Channel>, address: &str) -> BgpPeer {
    peer_of(b, Some(address)).await
}

/// Waits until the peer at `address` satisfies `f`.
async fn wait_peer_at(
    b: &mut BgpClient<Channel>,
    address: &str,
    what: &str,
    f: impl Fn(&BgpPeer) -> bool,
) -> BgpPeer {
    wait_peer_of(b, Some(address), what, f).await
}

async fn wait_peer(
    b: &mut BgpClient<Channel>,
    what: &str,
    f: impl Fn(&BgpPeer) -> bool,
) -> BgpPeer {
    wait_peer_of(b, None, what, f).await
}

/// Polls [`peer_of`] until `f` holds, at most [`WAIT`].
async fn wait_peer_of(
    b: &mut BgpClient<Channel>,
    address: Option<&str>,
    what: &str,
    f: impl Fn(&BgpPeer) -> bool,
) -> BgpPeer {
    let until = Instant::now() + WAIT;
    loop {
        let p = peer_of(b, address).await;
        if f(&p) {
            return p;
        }
        let who = address.unwrap_or("");
        assert!(Instant::now() < until, "peer {who} never {what}: {p:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn exports_to(kind: RouterKind) {
    let lab = Lab::build();
    let router = lab.router(kind, false);
    let rt = rt();
    let d = lab.trellisd(false);
    let c1 = Netns::new("bgpc1");
    rt.block_on(async {
        let mut a = agent(&d).await;
        let mut b = bgp(&d).await;
        routed_container(&mut a, &c1, "c1").await;
        router.wait_established(HOST.parse().unwrap(), WAIT);
        let host: IpAddr = HOST.parse().unwrap();
        let host6: IpAddr = HOST6.parse().unwrap();
        let r4 = router.wait_for_route(net("10.244.0.0/26"), host, WAIT);
        let r6 = router.wait_for_route(net("fd00:244::/122"), host6, WAIT);
        assert_eq!(r4.as_path, vec![OUR_AS], "{r4}");
        assert!(r4.communities.contains(&(65000, 42)), "{r4}");
        assert_eq!(r6.as_path, vec![OUR_AS], "{r6}");

        // What trellisd says it sent matches what the router has.
        let p = peer(&mut b).await;
        assert_eq!(p.state, "Established");
        assert_eq!(p.source, "config");
        let n = p.negotiated.clone().unwrap();
        assert!(n.four_octet_as && n.graceful_restart, "{n:?}");
        assert_eq!(n.families, ["ipv4-unicast", "ipv6-unicast"]);
        let routes = b
            .list_routes(ListBgpRoutesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(routes.exported, ["10.244.0.0/26", "fd00:244::/122"]);
        let sent: Vec<(String, String)> = routes.peers[0]
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), r.next_hop.clone()))
            .collect();
        assert_eq!(
            sent,
            [
                ("10.244.0.0/26".to_string(), HOST.to_string()),
                ("fd00:244::/122".to_string(), HOST6.to_string())
            ]
        );

        // The router restarts: the session and the routes come back.
        let mut router = router;
        router.restart();
        router.wait_established(host, WAIT);
        router.wait_for_route(net("10.244.0.0/26"), host, WAIT);
        router.wait_for_route(net("fd00:244::/122"), host6, WAIT);

        // The blocks go back to the pool (the network goes): withdrawn.
        a.detach(DetachRequest {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        })
        .await
        .expect("detach");
        a.delete_network(DeleteNetworkRequest {
            name: "pods".into(),
        })
        .await
        .expect("delete network");
        router.wait_for("the blocks withdrawn", WAIT, |r| r.is_empty());
        let p = wait_peer(&mut b, "without routes", |p| p.advertised == 0).await;
        assert!(p.counters.unwrap().prefixes_withdrawn >= 2);
    });
    drop(d);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs BIRD"
)]
#[test]
fn bgp_exports_blocks_to_bird() {
    exports_to(RouterKind::Bird);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs FRR"
)]
#[test]
fn bgp_exports_blocks_to_frr() {
    exports_to(RouterKind::Frr);
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs GoBGP"
)]
#[test]
fn bgp_exports_blocks_to_gobgp() {
    exports_to(RouterKind::Gobgp);
}

/// trellisd killed and started again: BIRD keeps the routes as stale
/// (graceful restart), the kernel keeps forwarding, and the PC's requests to
/// the container all succeed throughout; then the routes are fresh again.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs BIRD"
)]
#[test]
fn a_trellisd_restart_keeps_routes_and_traffic_by_graceful_restart() {
    let lab = Lab::build();
    let router = lab.router(RouterKind::Bird, true);
    let rt = rt();
    let mut d = lab.trellisd(false);
    let c1 = Netns::new("bgpc1");
    let ip = rt.block_on(async {
        let mut a = agent(&d).await;
        routed_container(&mut a, &c1, "c1").await
    });
    let host: IpAddr = HOST.parse().unwrap();
    router.wait_for_route(net("10.244.0.0/26"), host, WAIT);
    // The router's kernel learned the block from BIRD: the PC reaches c1.
    let server = TcpServer::start(&c1, SocketAddr::new(ip, 80), "c1");
    let stop = AtomicBool::new(false);
    let counts = Counts::default();
    std::thread::scope(|s| {
        s.spawn(|| tcp_traffic(&lab.pc, server.addr(), &stop, &counts));
        wait_count(&counts, 20);
        d.signal(Signal::SIGKILL);
        d.wait_exit(Duration::from_secs(10));
        let stale = router.wait_for("the block kept as stale", WAIT, |r| {
            r.iter()
                .any(|r| r.prefix == net("10.244.0.0/26") && r.stale)
        });
        assert!(
            stale
                .iter()
                .all(|r| r.next_hop == host || r.prefix.addr().is_ipv6())
        );
        let before = counts.ok.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            counts.ok.load(Ordering::SeqCst) > before + 20,
            "traffic stopped while trellisd was down"
        );
        d = lab.trellisd(false);
        router.wait_for_route(net("10.244.0.0/26"), host, WAIT);
        let now = counts.ok.load(Ordering::SeqCst);
        wait_count(&counts, now + 20);
        stop.store(true, Ordering::SeqCst);
    });
    let (ok, failed) = counts.get();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed across the restart",
        ok + failed
    );
    // The session came back with the R bit: one establishment this run.
    rt.block_on(async {
        let mut b = bgp(&d).await;
        let p = wait_peer(&mut b, "Established", |p| p.state == "Established").await;
        assert_eq!(p.counters.unwrap().established, 1);
    });
    trellis_testlab::report::record(
        "BGP",
        "trellisd SIGKILLed while BIRD routes a PC's requests to a container by the block trellisd announced",
        &format!(
            "BIRD kept the block as stale (graceful restart), {ok} requests answered and {failed} failed across the restart, the session came back and the block fresh"
        ),
    );
    drop(d);
}

fn wait_count(counts: &Counts, at_least: u64) {
    let until = Instant::now() + WAIT;
    while counts.ok.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < until,
            "traffic does not flow: {:?}",
            counts.get()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A router that freezes (SIGSTOP) is detected by the hold timer (9 s):
/// trellisd ends the session with NOTIFICATION 4/0 and says so; once the
/// router thaws the session comes back.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs BIRD"
)]
#[test]
fn a_silent_router_is_detected_by_the_hold_timer() {
    let lab = Lab::build();
    let router = lab.router(RouterKind::Bird, false);
    let rt = rt();
    let d = lab.trellisd(false);
    rt.block_on(async {
        let mut b = bgp(&d).await;
        wait_peer(&mut b, "Established", |p| p.state == "Established").await;
        let frozen = Instant::now();
        for pid in router.pids() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGSTOP)
                .unwrap();
        }
        let p = wait_peer(&mut b, "timed out", |p| {
            p.counters.as_ref().unwrap().hold_timer_expired == 1
        })
        .await;
        let took = frozen.elapsed();
        assert!(
            took >= Duration::from_secs(6) && took < Duration::from_secs(20),
            "{took:?}"
        );
        assert!(
            p.last_error.contains("nothing from the peer for 9 s"),
            "{p:?}"
        );
        for pid in router.pids() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGCONT)
                .unwrap();
        }
        let p = wait_peer(&mut b, "back", |p| p.state == "Established").await;
        assert_eq!(p.counters.unwrap().established, 2);
        trellis_testlab::report::record(
            "BGP",
            "the peer's router frozen (SIGSTOP) with hold time 9 s, then thawed",
            &format!("session ended after {:.1} s with NOTIFICATION 4/0 (\"nothing from the peer for 9 s\"); back Established after SIGCONT", took.as_secs_f64()),
        );
    });
    drop(d);
}

/// A scripted peer (no real router sends malformed UPDATEs) in the router's
/// namespace: an UPDATE with ORIGIN 7 is treated as withdraw (the session
/// stays, the counter says so); one with a /40 IPv4 prefix gets
/// NOTIFICATION 3/10 (invalid network field).
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces"
)]
#[test]
fn a_scripted_peers_malformed_updates_get_rfc7606_answers() {
    use tokio::io::AsyncWriteExt;
    use trellis_bgp::wire::{self, Family, LocalOpen, kind, read_frame};
    let lab = Lab::build();
    let addr: SocketAddr = format!("{ROUTER}:179").parse().unwrap();
    let listener = lab
        .router
        .enter(move || std::net::TcpListener::bind(addr).expect("bind 179 in the router"));
    listener.set_nonblocking(true).unwrap();
    let rt = rt();
    let d = lab.trellisd(false);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (mut s, from) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("trellisd connects")
            .unwrap();
        assert_eq!(from.ip(), HOST.parse::<IpAddr>().unwrap());
        assert_eq!(read_frame(&mut s).await.unwrap().kind, kind::OPEN);
        let open = wire::open(&LocalOpen {
            asn: ROUTER_AS,
            hold_time: 90,
            router_id: ROUTER.parse::<Ipv4Addr>().unwrap(),
            families: Family::ALL.to_vec(),
            graceful_restart: None,
        });
        s.write_all(&open).await.unwrap();
        s.write_all(&wire::keepalive()).await.unwrap();
        assert_eq!(read_frame(&mut s).await.unwrap().kind, kind::KEEPALIVE);
        // ORIGIN 7, AS_PATH [65000], NEXT_HOP, NLRI 10.1.2.0/24.
        let update = |origin: u8, nlri_len: u8| {
            let body: Vec<u8> = [
                &[0u8, 0, 0, 20][..],
                &[0x40, 1, 1, origin],
                &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8],
                &[0x40, 3, 4, 10, 99, 0, 2],
                &[nlri_len, 10, 1, 2],
            ]
            .concat();
            let mut m = vec![0xff; 16];
            m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
            m.push(kind::UPDATE);
            m.extend_from_slice(&body);
            m
        };
        s.write_all(&update(7, 24)).await.unwrap();
        let mut b = bgp(&d).await;
        let p = wait_peer(&mut b, "treating the UPDATE as withdraw", |p| {
            p.counters.as_ref().unwrap().treat_as_withdraw == 1
        })
        .await;
        assert_eq!(p.state, "Established");
        assert!(p.last_error.contains("ORIGIN value 7"), "{p:?}");
        trellis_testlab::report::record(
            "BGP",
            "a peer sends an UPDATE with ORIGIN 7",
            &format!(
                "treated as withdraw (RFC 7606), session kept: \"{}\"",
                p.last_error
            ),
        );
        s.write_all(&update(0, 40)).await.unwrap();
        let n = loop {
            let f = tokio::time::timeout(WAIT, read_frame(&mut s))
                .await
                .expect("an answer")
                .expect("a message");
            if f.kind == kind::NOTIFICATION {
                break f;
            }
        };
        assert_eq!(wire::parse_notification(&n), (3, 10));
        let p = wait_peer(&mut b, "down", |p| p.state != "Established").await;
        assert!(p.last_error.contains("invalid network field"), "{p:?}");
        trellis_testlab::report::record(
            "BGP",
            "a peer sends an UPDATE with an IPv4 prefix of length 40",
            &format!(
                "NOTIFICATION 3/10 and the session ended: \"{}\"",
                p.last_error
            ),
        );
    });
    drop(d);
}

/// A hostile peer beside BIRD: it floods UPDATEs for longer than BIRD's hold
/// time, as fast as TCP takes them, then sends garbage. trellisd absorbs the
/// flood (parsed and counted, nothing kept: its memory stays flat), answers
/// the garbage with NOTIFICATION 1/1 and ends only that session; BIRD's
/// session never drops, it learns a block announced in the middle of the
/// flood, and attaches go on.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs BIRD"
)]
#[test]
fn a_flooding_or_garbage_peer_disturbs_no_other_peer_or_attach() {
    use tokio::io::AsyncWriteExt;
    use trellis_bgp::wire::{self, Family, LocalOpen, kind, read_frame};
    use trellis_testlab::report::record;
    const EVIL: &str = "10.97.0.2";
    const EVIL_AS: u32 = 65001;
    const FLOOD: Duration = Duration::from_secs(12);
    let lab = Lab::build();
    let evil = Netns::new("bgpe");
    lab.host.veth_to("up1", &evil, "down0");
    lab.host.ip("addr add 10.97.0.1/24 dev up1");
    evil.ip(&format!("addr add {EVIL}/24 dev down0"));
    let addr: SocketAddr = format!("{EVIL}:179").parse().unwrap();
    let listener = evil.enter(move || std::net::TcpListener::bind(addr).expect("bind 179"));
    listener.set_nonblocking(true).unwrap();
    let router = lab.router(RouterKind::Bird, false);
    let rt = rt();
    let d = lab.trellisd_with(
        false,
        &format!("[[bgp.peers]]\naddress = \"{EVIL}\"\nasn = {EVIL_AS}\n"),
    );
    let (c1, c2) = (Netns::new("bgpc1"), Netns::new("bgpc2"));
    let host: IpAddr = HOST.parse().unwrap();
    rt.block_on(async {
        let mut a = agent(&d).await;
        let mut b = bgp(&d).await;
        let t = Instant::now();
        routed_container(&mut a, &c1, "c1").await;
        let quiet_attach = t.elapsed();
        router.wait_established(host, WAIT);
        router.wait_for_route(net("10.244.0.0/26"), host, WAIT);

        // The hostile peer's session.
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (mut s, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("trellisd connects to the hostile peer")
            .unwrap();
        assert_eq!(read_frame(&mut s).await.unwrap().kind, kind::OPEN);
        let open = wire::open(&LocalOpen {
            asn: EVIL_AS,
            hold_time: 90,
            router_id: EVIL.parse::<Ipv4Addr>().unwrap(),
            families: Family::ALL.to_vec(),
            graceful_restart: None,
        });
        s.write_all(&open).await.unwrap();
        s.write_all(&wire::keepalive()).await.unwrap();
        wait_peer_at(&mut b, EVIL, "established", |p| p.state == "Established").await;
        let bird = peer_at(&mut b, ROUTER).await.counters.unwrap().established;
        let rss_before = rss_kib(d.pid());

        // The flood: full-size UPDATEs (800 /32s each), back to back.
        let update = |n: u32| {
            let mut body: Vec<u8> = [
                &[0u8, 0, 0, 20][..],
                &[0x40, 1, 1, 0],
                &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9],
                &[0x40, 3, 4, 10, 97, 0, 2],
            ]
            .concat();
            for i in 0..800u32 {
                let a = (n * 800 + i) % (1 << 24);
                body.extend_from_slice(&[32, 10, (a >> 16) as u8, (a >> 8) as u8, a as u8]);
            }
            let mut m = vec![0xff; 16];
            m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
            m.push(kind::UPDATE);
            m.extend_from_slice(&body);
            m
        };
        let flood = tokio::spawn(async move {
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < FLOOD {
                s.write_all(&update(sent as u32)).await.unwrap();
                sent += 1;
            }
            (s, sent)
        });
        // Mid-flood: a new network's block goes out to BIRD, attaches go on.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = Instant::now();
        let spec = NetworkSpec {
            name: "pods2".into(),
            mode: NetworkMode::Routed as i32,
            subnets: vec!["10.245.0.0/16".into()],
            ..Default::default()
        };
        a.create_network(CreateNetworkRequest { spec: Some(spec) })
            .await
            .expect("create a network mid-flood");
        a.attach(AttachRequest {
            network: "pods2".into(),
            container_id: "c2".into(),
            netns: c2.path_str(),
            ifname: "eth0".into(),
            ..Default::default()
        })
        .await
        .expect("attach mid-flood");
        let flood_attach = t.elapsed();
        router.wait_for_route(net("10.245.0.0/26"), host, WAIT);
        let learned = t.elapsed();
        let (mut s, sent) = flood.await.unwrap();
        let absorbed = wait_peer_at(&mut b, EVIL, "reading every UPDATE", |p| {
            p.counters.as_ref().unwrap().updates_in >= sent
        })
        .await;
        assert_eq!(absorbed.state, "Established", "{absorbed:?}");
        let rss_after = rss_kib(d.pid());
        let p = peer_at(&mut b, ROUTER).await;
        assert_eq!(p.state, "Established", "BIRD's session dropped: {p:?}");
        assert_eq!(p.counters.unwrap().established, bird, "BIRD's session flapped");
        assert!(
            rss_after < rss_before + 32 * 1024,
            "trellisd grew from {rss_before} to {rss_after} KiB absorbing {sent} UPDATEs"
        );
        let mb = sent as f64 * 4043.0 / 1e6;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "flood: {sent} UPDATEs ({mb:.0} MB, {} prefixes) in {FLOOD:?}; RSS {rss_before} -> {rss_after} KiB; \
             attach quiet {:.1} ms, mid-flood {:.1} ms; new block at BIRD {:.0} ms after the request",
            sent * 800,
            ms(quiet_attach),
            ms(flood_attach),
            ms(learned)
        );
        record(
            "BGP",
            &format!(
                "a peer floods UPDATEs for {}s beside BIRD (hold time 9 s): {sent} full-size UPDATEs, {} /32s, {mb:.0} MB",
                FLOOD.as_secs(),
                sent * 800
            ),
            &format!(
                "all read and counted, session kept; RSS {} -> {} MiB; BIRD's session never dropped and learned a block announced mid-flood in {:.0} ms; an attach mid-flood took {:.1} ms (quiet: {:.1} ms)",
                rss_before / 1024,
                rss_after / 1024,
                ms(learned),
                ms(flood_attach),
                ms(quiet_attach)
            ),
        );

        // Garbage: a header whose marker is not all ones.
        s.write_all(&[0u8; 19]).await.unwrap();
        let n = loop {
            let f = tokio::time::timeout(WAIT, read_frame(&mut s))
                .await
                .expect("an answer to garbage")
                .expect("a message");
            if f.kind == kind::NOTIFICATION {
                break f;
            }
        };
        assert_eq!(wire::parse_notification(&n), (1, 1));
        let gone = wait_peer_at(&mut b, EVIL, "down", |p| p.state != "Established").await;
        assert!(gone.last_error.contains("not synchronized"), "{gone:?}");
        let p = peer_at(&mut b, ROUTER).await;
        assert_eq!(p.state, "Established", "{p:?}");
        assert_eq!(p.counters.unwrap().established, bird, "BIRD's session flapped");
        a.detach(DetachRequest {
            container_id: "c2".into(),
            ifname: "eth0".into(),
        })
        .await
        .expect("detach after the garbage");
        record(
            "BGP",
            "a peer sends 19 zero bytes (a header whose marker is not all ones)",
            &format!(
                "NOTIFICATION 1/1 to it and only its session ended (\"{}\"); BIRD's session untouched, detach works",
                gone.last_error
            ),
        );
    });
    drop(d);
}

/// The other way round, with the rest of the API: BIRD connects to trellisd
/// (a passive peer on trellisd's listener) with a TCP MD5 key; a routable
/// bridge network's subnet is announced; the session shows in the metrics; a
/// peer added over gRPC is kept across a restart and removed again; the
/// config file's peer cannot be removed over gRPC.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs BIRD"
)]
#[test]
fn a_passive_md5_peer_a_routable_subnet_metrics_and_api_peers() {
    use crate::util::{sample, scrape};
    use trellis_proto::v1::{AddBgpPeerRequest, BgpPeerConfig, RemoveBgpPeerRequest};
    let lab = Lab::build();
    let config = lab.dir.path().join("passive.toml");
    std::fs::write(
        &config,
        format!(
            "[bgp]\nasn = {OUR_AS}\nrouter_id = \"{HOST}\"\nhold_time = 9\nlisten = \"{HOST}:179\"\n\
             [[bgp.peers]]\naddress = \"{ROUTER}\"\nasn = {ROUTER_AS}\npassive = true\nmd5_password = \"s3cret\"\n"
        ),
    )
    .unwrap();
    let metrics = "127.0.0.1:9464";
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--metrics-addr",
        metrics,
    ];
    let mut d = Daemon::start(&lab.host, lab.dir.path(), &args);
    d.wait_ready();
    let cfg = RouterConfig::new(
        RouterKind::Bird,
        ROUTER.parse().unwrap(),
        ROUTER_AS,
        ROUTER.parse().unwrap(),
    )
    .neighbor(Neighbor::new(HOST.parse().unwrap(), OUR_AS).md5("s3cret"));
    let router = Router::start(&lab.router, cfg);
    let host: IpAddr = HOST.parse().unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut a = agent(&d).await;
        let spec = NetworkSpec {
            name: "direct".into(),
            mode: NetworkMode::Bridge as i32,
            subnets: vec!["192.168.99.0/24".into()],
            bridge: "trdirect0".into(),
            routable: true,
            ..Default::default()
        };
        a.create_network(CreateNetworkRequest { spec: Some(spec) })
            .await
            .expect("create a routable network");
    });
    router.wait_established(host, WAIT);
    router.wait_for_route(net("192.168.99.0/24"), host, WAIT);
    let m = scrape(&lab.host, metrics.parse().unwrap());
    let up = format!("trellis_bgp_session_established{{peer=\"{ROUTER}\"}}");
    assert_eq!(sample(&m, &up), Some(1.0), "{m}");
    let adv = format!("trellis_bgp_prefixes_advertised{{peer=\"{ROUTER}\"}}");
    assert_eq!(sample(&m, &adv), Some(1.0), "{m}");

    let other = "10.99.0.9";
    rt.block_on(async {
        let mut b = bgp(&d).await;
        let added = b
            .add_peer(AddBgpPeerRequest {
                peer: Some(BgpPeerConfig {
                    address: other.into(),
                    remote_as: 65009,
                    hold_time: Some(30),
                    communities: vec!["65009:1".into()],
                    ..Default::default()
                }),
            })
            .await
            .expect("add a peer")
            .into_inner();
        assert_eq!(added.source, "api");
        let e = b
            .add_peer(AddBgpPeerRequest {
                peer: Some(BgpPeerConfig {
                    address: other.into(),
                    remote_as: 65009,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
        let e = b
            .remove_peer(RemoveBgpPeerRequest {
                address: ROUTER.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(e.message().contains("config file"), "{e}");
    });
    // Restarted, trellisd has both peers again (the API's from its store).
    d.terminate();
    let d = {
        let mut d = Daemon::start(&lab.host, lab.dir.path(), &args);
        d.wait_ready();
        d
    };
    rt.block_on(async {
        let mut b = bgp(&d).await;
        let peers = b
            .list_peers(ListBgpPeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers;
        let mut seen: Vec<(String, String)> = peers
            .iter()
            .map(|p| (p.config.clone().unwrap().address, p.source.clone()))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (ROUTER.to_string(), "config".to_string()),
                (other.to_string(), "api".to_string())
            ]
        );
        let kept = peers.iter().find(|p| p.source == "api").unwrap();
        let c = kept.config.clone().unwrap();
        assert_eq!(
            (c.remote_as, c.hold_time, c.communities.clone()),
            (65009, Some(30), vec!["65009:1".to_string()])
        );
        b.remove_peer(RemoveBgpPeerRequest {
            address: other.into(),
        })
        .await
        .expect("remove the API's peer");
        let e = b
            .remove_peer(RemoveBgpPeerRequest {
                address: other.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    });
    // The router kept (or got back) the subnet through all this.
    router.wait_for_route(net("192.168.99.0/24"), host, WAIT);
    drop(d);
}
