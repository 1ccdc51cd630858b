//! Privileged tests of trellis-link: every one builds its own namespaces (a
//! "host" and "containers") and never touches the machine's own.

mod util;

use std::time::Instant;
use trellis_link::*;
use trellis_testlab::{Netns, TcpServer, seen_ip, tcp_request};
use util::{Lab, at, ifn, mac_in, nspath};

fn bridge(name: &str) -> BridgeSpec {
    BridgeSpec {
        name: ifn(name),
        gateway: vec!["192.168.169.1/24".parse().unwrap()],
        mac: None,
        mtu: Some(1400),
    }
}

fn veth(host_name: &str, c: &Netns, peer: &str, master: Option<u32>) -> VethSpec {
    VethSpec {
        host_name: ifn(host_name),
        container_netns: nspath(c),
        container_name: ifn(peer),
        mtu: Some(1400),
        container_mac: None,
        host_mac: None,
        master: master.map(LinkRef::Index),
        host_ipv6: true,
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn bridge_is_idempotent_and_keeps_its_mac_as_ports_come_and_go() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let spec = bridge("br0");
    let idx = lab.links.ensure_bridge(&spec).await.unwrap();
    assert_eq!(
        lab.links.ensure_bridge(&spec).await.unwrap(),
        idx,
        "second ensure"
    );
    let want = format_mac(&bridge_mac(&spec.name));
    let shown = lab.host.ip("-d link show br0");
    assert!(
        shown.contains("bridge") && shown.contains("mtu 1400") && shown.contains("UP"),
        "{shown}"
    );
    assert_eq!(mac_in(&shown), want);
    let localnet = lab
        .host
        .exec_ok(&["sysctl", "-n", "net.ipv4.conf.br0.route_localnet"]);
    assert_eq!(localnet.trim(), "1", "published ports on 127.0.0.1 need it");
    assert!(lab.host.ip("addr show br0").contains("192.168.169.1/24"));

    let v = veth("tr0000000000001", &c, "eth0", Some(idx));
    lab.links.create_veth(&v).await.unwrap();
    assert_eq!(
        mac_in(&lab.host.ip("link show br0")),
        want,
        "after adding a port"
    );
    lab.links.delete_link(&v.host_name).await.unwrap();
    assert_eq!(
        mac_in(&lab.host.ip("link show br0")),
        want,
        "after removing it"
    );
    assert_eq!(
        lab.links.ensure_bridge(&spec).await.unwrap(),
        idx,
        "third ensure"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn peer_is_born_in_the_container_and_reaches_the_gateway() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let br = lab.links.ensure_bridge(&bridge("br0")).await.unwrap();
    let host_name = host_veth_name(
        &trellis_types::ContainerId::parse("id", "c1").unwrap(),
        &ifn("eth0"),
    );
    let spec = veth(host_name.as_str(), &c, "eth0", Some(br));
    let info = lab.links.create_veth(&spec).await.unwrap();

    let peer = c.ip("link show eth0");
    assert!(
        peer.contains(&format!("{}: eth0@", info.container_ifindex)),
        "{peer}"
    );
    assert!(peer.contains("mtu 1400"), "{peer}");
    assert_eq!(mac_in(&peer), format_mac(&info.container_mac));
    assert_eq!(info.container_mac, container_mac(&host_name));
    let hostside = lab.host.ip(&format!("link show {host_name}"));
    assert!(
        hostside.contains("master br0")
            && hostside.contains(&format!("{}: {host_name}@", info.host_ifindex)),
        "{hostside}"
    );
    assert!(
        !lab.host.ip("link show").contains("eth0"),
        "peer never appears on the host"
    );

    let iface = ContainerIface {
        netns: nspath(&c),
        link: LinkRef::Index(info.container_ifindex),
        addresses: vec!["192.168.169.2/24".parse().unwrap()],
        ipv6: true,
    };
    lab.links.setup_container_iface(&iface).await.unwrap();
    let shown = c.ip("addr show eth0");
    assert!(
        shown.contains("192.168.169.2/24") && shown.contains(",UP"),
        "{shown}"
    );
    assert!(c.ip("link show lo").contains(",UP"));
    let ping = c.exec(&["ping", "-c", "1", "-W", "2", "192.168.169.1"]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let server = TcpServer::start(&lab.host, "192.168.169.1:7070".parse().unwrap(), "gw");
    let reply = tcp_request(&c, server.addr()).unwrap();
    assert_eq!(
        seen_ip(&reply).to_string(),
        "192.168.169.2",
        "what the gateway saw: {reply}"
    );

    lab.links.delete_link(&host_name).await.unwrap();
    lab.links
        .delete_link(&host_name)
        .await
        .expect("second delete is a no-op");
    assert!(
        !c.ip("link show").contains("eth0"),
        "peer went with the host end"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn container_side_operations_and_sysctls_happen_in_the_right_netns() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let spec = veth("tr0000000000002", &c, "eth1", None);
    lab.links.create_veth(&spec).await.unwrap();
    let cns = at(&c);
    lab.links
        .add_address(
            &cns,
            &LinkRef::Name(ifn("eth1")),
            "fd00::2/64".parse().unwrap(),
        )
        .await
        .unwrap();
    lab.links
        .set_up(&cns, &LinkRef::Name(ifn("eth1")))
        .await
        .unwrap();
    assert!(c.ip("addr show eth1").contains("fd00::2/64"));
    assert!(lab.links.link_exists(&cns, &ifn("eth1")).await.unwrap());
    assert!(
        !lab.links
            .link_exists(&Ns::Host, &ifn("eth1"))
            .await
            .unwrap()
    );
    let err = lab
        .links
        .set_up(&cns, &LinkRef::Name(ifn("nope0")))
        .await
        .unwrap_err();
    assert!(matches!(err, LinkError::NotFound { .. }), "{err}");

    // The host veth exists only in the lab's host netns: success proves where it ran.
    let key = SysctlKey::ipv4_conf(&spec.host_name, "proxy_arp").unwrap();
    lab.links.set_sysctl(&Ns::Host, &key, "1").await.unwrap();
    assert_eq!(
        lab.host
            .read_sysctl(&format!("net.ipv4.conf.{}.proxy_arp", spec.host_name)),
        "1"
    );
    let key = SysctlKey::ipv4_conf(&ifn("eth1"), "rp_filter").unwrap();
    lab.links.set_sysctl(&cns, &key, "2").await.unwrap();
    assert_eq!(c.read_sysctl("net.ipv4.conf.eth1.rp_filter"), "2");
    let missing = SysctlKey::ipv4_conf(&ifn("eth1"), "proxy_arp").unwrap();
    let err = lab
        .links
        .set_sysctl(&Ns::Host, &missing, "1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, LinkError::Io { .. }),
        "eth1 is not in the host netns: {err}"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn link_detail_reads_a_link_and_only_its_own_addresses_in_either_namespace() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let br = lab.links.ensure_bridge(&bridge("br0")).await.unwrap();
    let info = lab
        .links
        .create_veth(&veth("tr0000000000009", &c, "eth0", Some(br)))
        .await
        .unwrap();
    let mine: Vec<ipnet::IpNet> = vec![
        "192.168.169.9/24".parse().unwrap(),
        "fd00::9/64".parse().unwrap(),
    ];
    let iface = ContainerIface {
        netns: nspath(&c),
        link: LinkRef::Index(info.container_ifindex),
        addresses: mine.clone(),
        ipv6: false,
    };
    lab.links.setup_container_iface(&iface).await.unwrap();

    let detail = lab.links.link_detail(&at(&c), &ifn("eth0")).await.unwrap();
    let LinkDetail { link, addresses } = detail.expect("eth0 is in the container");
    assert_eq!(
        (link.index, link.name.as_str(), link.up, link.mac),
        (
            info.container_ifindex,
            "eth0",
            true,
            Some(info.container_mac)
        )
    );
    // Not lo's 127.0.0.1, and no link-local (`ipv6: false`).
    let mut addresses = addresses;
    addresses.sort();
    assert_eq!(addresses, mine);

    let bridge_side = lab.links.link_detail(&Ns::Host, &ifn("br0")).await.unwrap();
    let bridge_side = bridge_side.expect("br0 is on the host");
    assert_eq!(bridge_side.link.kind.as_deref(), Some("bridge"));
    assert!(
        bridge_side
            .addresses
            .contains(&"192.168.169.1/24".parse().unwrap()),
        "{bridge_side:?}"
    );

    for (ns, name) in [(at(&c), "nope0"), (Ns::Host, "eth0")] {
        let none = lab.links.link_detail(&ns, &ifn(name)).await.unwrap();
        assert_eq!(none, None, "{name} in {ns}");
    }
    let bad = Ns::Path(
        trellis_types::NetnsPath::parse("netns", "/run/netns/trellis-does-not-exist").unwrap(),
    );
    let err = lab.links.link_detail(&bad, &ifn("eth0")).await.unwrap_err();
    assert!(
        matches!(&err, LinkError::Invalid(i) if i.field == "netns"),
        "{err}"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn bad_netns_path_is_a_typed_error_and_leaves_nothing_behind() {
    let lab = Lab::new().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let paths = [
        file.path().to_string_lossy().into_owned(),
        "/run/netns/trellis-does-not-exist".to_owned(),
        "/proc/self/ns/mnt".to_owned(),
        "/tmp".to_owned(),
    ];
    for path in paths {
        let mut spec = veth("tr0000000000003", &Netns::new("tmp"), "eth0", None);
        spec.container_netns = trellis_types::NetnsPath::parse("netns", &path).unwrap();
        let err = lab.links.create_veth(&spec).await.unwrap_err();
        let LinkError::Invalid(bad) = &err else {
            panic!("{path}: {err:?}")
        };
        assert_eq!(
            (bad.field, bad.value.as_str()),
            ("netns", path.as_str()),
            "{err}"
        );
        let leaked = lab
            .links
            .list_links_with_prefix(&Ns::Host, "tr")
            .await
            .unwrap();
        assert!(leaked.is_empty(), "{path}: {leaked:?}");
        assert!(!lab.host.ip("link show").contains("tr000"), "{path}");
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn taken_names_and_non_bridges_are_distinct_errors() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    lab.host.ip("link add br0 type veth peer name br0p");
    let err = lab.links.ensure_bridge(&bridge("br0")).await.unwrap_err();
    assert!(
        matches!(&err, LinkError::NotABridge { kind, .. } if kind == "a veth"),
        "{err}"
    );

    let spec = veth("tr0000000000004", &c, "eth0", None);
    lab.links.create_veth(&spec).await.unwrap();
    let err = lab.links.create_veth(&spec).await.unwrap_err();
    assert!(
        matches!(&err, LinkError::AlreadyExists { name } if name == "tr0000000000004"),
        "{err}"
    );
    let other = veth("tr0000000000005", &c, "eth0", None);
    let err = lab.links.create_veth(&other).await.unwrap_err();
    assert!(
        matches!(&err, LinkError::AlreadyExists { name } if name.starts_with("eth0 in ")),
        "{err}"
    );
    assert!(
        !lab.links
            .link_exists(&Ns::Host, &other.host_name)
            .await
            .unwrap()
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn batched_delete_removes_all_and_ignores_missing() {
    const N: usize = 16;
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let br = lab.links.ensure_bridge(&bridge("br0")).await.unwrap();
    let mut names = Vec::new();
    let mut took = Vec::new();
    for i in 0..N {
        let spec = veth(&format!("tr{i:013x}"), &c, &format!("eth{i}"), Some(br));
        let t = Instant::now();
        lab.links.create_veth(&spec).await.unwrap();
        took.push(t.elapsed());
        names.push(spec.host_name);
    }
    took.sort();
    eprintln!(
        "create_veth (enslaved, peer in netns): p50 {:?}, max {:?}",
        took[N / 2],
        took[N - 1]
    );
    let listed = lab
        .links
        .list_links_with_prefix(&Ns::Host, HOST_VETH_PREFIX)
        .await
        .unwrap();
    assert_eq!(listed.len(), N);
    assert!(
        listed
            .iter()
            .all(|l| l.kind.as_deref() == Some("veth") && l.master == Some(br))
    );

    names.push(ifn("tr-missing"));
    let t = Instant::now();
    lab.links.delete_links(&names).await.unwrap();
    eprintln!("delete_links of {N} veths: {:?}", t.elapsed());
    assert!(
        lab.links
            .list_links_with_prefix(&Ns::Host, "tr")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!c.ip("link show").contains("eth"), "peers went too");
    lab.links
        .delete_links(&names)
        .await
        .expect("again: all already gone");
    assert!(
        lab.host.ip("link show br0").contains("br0"),
        "the bridge is not in the group"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn per_call_container_sockets_are_closed_after_the_call() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = fds();
    for _ in 0..100 {
        assert!(lab.links.link_exists(&at(&c), &ifn("lo")).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let after = fds();
    // Other tests run in parallel and open fds of their own: allow some slack,
    // far below the 100 a leak would show.
    assert!(after < before + 40, "fds {before} → {after}: sockets leak");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn batched_delete_beats_one_by_one() {
    const N: usize = 8;
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let mut took = [std::time::Duration::ZERO; 2];
    for (round, batched) in [(0, false), (1, true)] {
        let mut names = Vec::new();
        for i in 0..N {
            let spec = veth(
                &format!("tr{round}{i:012x}"),
                &c,
                &format!("e{round}-{i}"),
                None,
            );
            lab.links.create_veth(&spec).await.unwrap();
            names.push(spec.host_name);
        }
        let t = Instant::now();
        if batched {
            lab.links.delete_links(&names).await.unwrap();
        } else {
            for n in &names {
                lab.links.delete_link(n).await.unwrap();
            }
        }
        took[round] = t.elapsed();
    }
    eprintln!(
        "delete {N} veths: one by one {:?}, batched {:?}",
        took[0], took[1]
    );
    assert!(
        lab.links
            .list_links_with_prefix(&Ns::Host, "tr")
            .await
            .unwrap()
            .is_empty()
    );
}

/// On an IPv4-only bridge network neither end speaks IPv6 on its own: the
/// host end (a bridge port) has `disable_ipv6` set before it comes up, the
/// container end gets no link-local address. Yet both are up, the port is in
/// hairpin mode, and IPv4 flows. With IPv6 kept, both ends get link-locals.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn ipv6_stays_silent_where_it_is_not_wanted() {
    let lab = Lab::new().await;
    let br = lab.links.ensure_bridge(&bridge("br0")).await.unwrap();
    for keep in [false, true] {
        let c = Netns::new("ctr");
        let name = if keep {
            "tr00000000000b1"
        } else {
            "tr00000000000b0"
        };
        let mut spec = veth(name, &c, "eth0", Some(br));
        spec.host_ipv6 = keep;
        let info = lab.links.create_veth(&spec).await.unwrap();
        let iface = ContainerIface {
            netns: nspath(&c),
            link: LinkRef::Index(info.container_ifindex),
            addresses: vec!["192.168.169.7/24".parse().unwrap()],
            ipv6: keep,
        };
        lab.links.setup_container_iface(&iface).await.unwrap();
        let disabled = lab.host.exec_ok(&[
            "sysctl",
            "-n",
            &format!("net.ipv6.conf.{name}.disable_ipv6"),
        ]);
        assert_eq!(
            disabled.trim(),
            if keep { "0" } else { "1" },
            "host end, keep={keep}"
        );
        let detail = lab.host.ip(&format!("-d link show {name}"));
        assert!(
            detail.contains("state UP") || detail.contains(",UP"),
            "{detail}"
        );
        assert!(detail.contains("hairpin on"), "{detail}");
        let genmode = c.ip("-d link show eth0");
        let want = if keep {
            "addrgenmode eui64"
        } else {
            "addrgenmode none"
        };
        assert!(
            genmode.contains(want),
            "container end, keep={keep}: {genmode}"
        );
        lab.host.ip("addr replace 192.168.169.1/24 dev br0");
        c.exec_ok(&["ping", "-c1", "-W2", "192.168.169.1"]);
        // With IPv6 kept, link-locals appear once the carrier event is
        // processed (the kernel may defer it); without, there is none.
        let link_locals = || {
            let c6 = c.ip("-6 addr show dev eth0");
            let h6 = lab.host.ip(&format!("-6 addr show dev {name}"));
            (
                c6.contains("fe80::"),
                h6.contains("fe80::"),
                format!("{c6}{h6}"),
            )
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = link_locals();
        while keep && !(seen.0 && seen.1) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            seen = link_locals();
        }
        assert_eq!((seen.0, seen.1), (keep, keep), "keep={keep}: {}", seen.2);
        lab.links.delete_link(&spec.host_name).await.unwrap();
    }
}

/// A Linux bridge takes 1023 ports; the 1024th veth is refused with an error
/// that names the bridge and says why, and leaves no half-made veth behind.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn a_full_bridge_is_a_clear_error_and_leaves_nothing() {
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    let br = lab.links.ensure_bridge(&bridge("brfull")).await.unwrap();
    for i in 0..BRIDGE_MAX_PORTS {
        let spec = veth(&format!("trf{i:012}"), &c, &format!("e{i}"), Some(br));
        lab.links.create_veth(&spec).await.unwrap();
    }
    let one_more = veth("trf_one_more", &c, "e_more", Some(br));
    let err = lab.links.create_veth(&one_more).await.unwrap_err();
    assert!(matches!(err, LinkError::BridgeFull { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("1023 ports") && text.contains(&br.to_string()),
        "{text}"
    );
    assert!(!lab.host.ip("link show").contains("trf_one_more"));
    assert!(!c.ip("link show").contains("e_more"));
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn host_ports_held_by_sockets_are_found_by_a_bind_probe() {
    let lab = Lab::new().await;
    lab.host.ip("link set lo up");
    // A TCP listener on 127.0.0.1:7000 and a UDP socket on every address :5353,
    // held open in the host namespace for the length of the test.
    let (tcp, udp) = lab.host.enter(|| {
        (
            std::net::TcpListener::bind("127.0.0.1:7000").unwrap(),
            std::net::UdpSocket::bind("0.0.0.0:5353").unwrap(),
        )
    });
    let want = |protocol, ip: Option<&str>, port| WantedPort {
        protocol,
        host_ip: ip.map(|s| s.parse().unwrap()),
        port,
    };
    use trellis_types::Protocol::{Tcp, Udp};
    let found = lab
        .links
        .host_listeners(&[
            want(Tcp, None, 7000),
            want(Tcp, Some("127.0.0.1"), 7000),
            want(Tcp, Some("127.0.0.2"), 7000),
            want(Udp, None, 5353),
            want(Udp, Some("127.0.0.1"), 5353),
            want(Tcp, None, 5353),
            want(Tcp, None, 7001),
        ])
        .await
        .unwrap();
    let got: Vec<String> = found
        .iter()
        .map(|l| format!("{:?} {}", l.protocol, l.local))
        .collect();
    assert_eq!(
        got,
        [
            "Tcp 0.0.0.0:7000",
            "Tcp 127.0.0.1:7000",
            "Udp 0.0.0.0:5353",
            "Udp 127.0.0.1:5353"
        ],
        "127.0.0.2:7000, tcp 5353 and 7001 are free"
    );
    // The probe itself never listens: the port is free again once the
    // holders are gone.
    drop((tcp, udp));
    assert!(
        lab.links
            .host_listeners(&[want(Tcp, None, 7000)])
            .await
            .unwrap()
            .is_empty()
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[tokio::test]
async fn a_veth_finds_its_bridge_made_again_behind_trellis_back() {
    // The bridge's index is remembered after the first veth put on it by
    // name; a bridge deleted and made again (here by hand) has another.
    let lab = Lab::new().await;
    let c = Netns::new("ctr");
    lab.links.ensure_bridge(&bridge("br0")).await.unwrap();
    let by_name = |host: &str, peer: &str| VethSpec {
        master: Some(LinkRef::Name(ifn("br0"))),
        ..veth(host, &c, peer, None)
    };
    let first = lab
        .links
        .create_veth(&by_name("tr0000000000006", "eth0"))
        .await
        .unwrap();
    assert!(
        lab.host
            .ip("link show tr0000000000006")
            .contains("master br0")
    );
    lab.host.ip("link del br0");
    lab.host.ip("link add br0 type bridge");
    let second = lab
        .links
        .create_veth(&by_name("tr0000000000007", "eth1"))
        .await
        .unwrap();
    let shown = lab.host.ip("link show tr0000000000007");
    assert!(shown.contains("master br0"), "{shown}");
    // The echo of the create gives the same indexes a lookup does.
    let host = lab.host.ip("-o link show tr0000000000007");
    assert!(
        host.starts_with(&format!("{}: ", second.host_ifindex)),
        "{host}"
    );
    let peer = c.ip("-o link show eth1");
    assert!(
        peer.starts_with(&format!("{}: ", second.container_ifindex)),
        "{peer}"
    );
    assert_ne!(first.host_ifindex, second.host_ifindex);
}
