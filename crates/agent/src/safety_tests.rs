//! Tables for the pure host-safety checks: a realistic host (an uplink with
//! an address, its connected route, a default route, a VPN route via a
//! gateway, an `onlink` gateway outside every subnet, a /32 on `lo`, an IPv6
//! on-link prefix, and trellis's own bridge and routes) against requests.

use crate::model::PortSpec;
use crate::safety::{
    HostFacts, check_host_ips, check_listeners, check_netns_identity, check_special, check_subnet,
};
use crate::{Error, ErrorClass};
use trellis_link::{HostAddress, Listener, NetnsId, ReservedNetns};
use trellis_route::{HostRoute, Route, RouteKind, Scope};
use trellis_types::{IfName, NetnsPath, Protocol};

fn dev(name: &str) -> Option<IfName> {
    Some(IfName::parse("dev", name).unwrap())
}

fn route(dst: &str, via: Option<&str>, on: &str, protocol: u8) -> HostRoute {
    let route = Route {
        dst: dst.parse().unwrap(),
        via: via.map(|v| v.parse().unwrap()),
        dev: dev(on),
        scope: if via.is_some() {
            Scope::Universe
        } else {
            Scope::Link
        },
        kind: RouteKind::Unicast,
        metric: None,
    };
    HostRoute { route, protocol }
}

fn host() -> HostFacts {
    let addr = |a: &str, d: &str| HostAddress {
        dev: d.into(),
        addr: a.parse().unwrap(),
    };
    HostFacts {
        addresses: vec![
            addr("127.0.0.1/8", "lo"),
            addr("10.77.0.1/32", "lo"),
            addr("10.1.253.101/24", "up0"),
            addr("fd00:1:253::101/64", "up0"),
            addr("192.168.169.1/24", "trellis0"),
        ],
        routes: vec![
            route("0.0.0.0/0", Some("10.1.253.1"), "up0", 4),
            route("10.1.253.0/24", None, "up0", 2),
            route("10.0.0.0/8", Some("10.1.253.1"), "up0", 4),
            route("192.0.2.0/24", Some("172.31.1.1"), "up0", 4),
            route("fd00:1:253::/64", None, "up0", 2),
            route("192.168.169.0/24", None, "trellis0", 2),
            route("10.244.0.5/32", None, "tr0123456789abc", 116),
        ],
    }
    .without_trellis(&[IfName::parse("bridge", "trellis0").unwrap()])
}

#[test]
fn special_ranges_and_routed_gateways_are_refused() {
    let refused = [
        ("127.0.0.0/8", "loopback"),
        ("127.5.0.0/16", "loopback"),
        ("0.0.0.0/8", "this network"),
        ("0.0.0.0/0", "169.254.1.1"),
        ("169.254.0.0/24", "link-local"),
        ("169.254.0.0/16", "169.254.1.1"),
        ("169.254.1.0/24", "169.254.1.1"),
        ("224.1.0.0/24", "multicast"),
        ("239.255.0.0/16", "multicast"),
        ("240.0.0.0/24", "class E"),
        ("255.255.255.255/32", "broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/0", "fe80::ecee:eeff:feee:eeee"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("fe80::/64", "routed-mode container"),
        ("fe80:1::/32", "link-local"),
        ("fe80::ecee:eeff:feee:eeee/128", "fe80::ecee:eeff:feee:eeee"),
        ("ff05::/64", "multicast"),
    ];
    for (subnet, word) in refused {
        let e = check_special("subnet", subnet.parse().unwrap()).unwrap_err();
        assert_eq!(e.field, "subnet", "{subnet}");
        assert!(e.to_string().contains(word), "{subnet}: {e}");
    }
    for ok in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fd00::/8",
        "2001:db8::/32",
    ] {
        check_special("subnet", ok.parse().unwrap()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn subnets_the_host_uses_are_refused_naming_the_conflict() {
    let host = host();
    let refused = [
        ("10.1.253.0/24", "address 10.1.253.101/24 on up0"),
        (
            "10.1.0.0/16",
            "contains the host's address 10.1.253.101/24 on up0",
        ),
        ("10.1.253.128/25", "connected route 10.1.253.0/24 dev up0"),
        ("10.1.253.96/28", "address 10.1.253.101"),
        ("10.77.0.0/24", "address 10.77.0.1/32 on lo"),
        (
            "172.31.0.0/16",
            "172.31.1.1, the gateway of the host's route 192.0.2.0/24",
        ),
        ("10.0.0.0/8", "address 10.77.0.1/32 on lo"),
        ("fd00:1:253::/64", "fd00:1:253::101"),
        ("fd00:1:253::8000/113", "connected route fd00:1:253::/64"),
        ("fd00:1::/32", "fd00:1:253::101"),
    ];
    for (subnet, word) in refused {
        let e = check_subnet("subnet", subnet.parse().unwrap(), &host).unwrap_err();
        assert_eq!(e.class(), ErrorClass::FailedPrecondition, "{subnet}: {e}");
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("subnet \"{subnet}\"")), "{msg}");
        assert!(msg.contains(word), "{subnet}: {msg}");
    }
}

#[test]
fn routes_via_a_gateway_only_warn_and_trellis_own_is_no_conflict() {
    let host = host();
    let warned = check_subnet("subnet", "10.244.0.0/16".parse().unwrap(), &host).unwrap();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("10.0.0.0/8 via 10.1.253.1"),
        "{warned:?}"
    );
    assert!(warned[0].contains("shadow"), "{warned:?}");
    // The default route never warns; trellis's own bridge and veths are
    // IPAM's business, not the host's.
    for quiet in [
        "192.168.169.0/24",
        "172.20.0.0/16",
        "10.244.0.0/26",
        "fd00:99::/64",
    ] {
        let w = check_subnet("subnet", quiet.parse().unwrap(), &host);
        let w = w.unwrap_or_else(|e| panic!("{quiet}: {e}"));
        if quiet.starts_with("10.") {
            assert_eq!(w.len(), 1, "{quiet}: {w:?}");
        } else {
            assert!(w.is_empty(), "{quiet}: {w:?}");
        }
    }
}

#[test]
fn reserved_namespaces_are_refused_whatever_the_path() {
    let host = NetnsId {
        dev: 4,
        ino: 4026532000,
    };
    let init = NetnsId {
        dev: 4,
        ino: 4026531840,
    };
    let reserved = [
        ReservedNetns {
            id: host,
            what: "the host network namespace that trellis plumbs",
        },
        ReservedNetns {
            id: init,
            what: "the network namespace of init (pid 1)",
        },
    ];
    for (path, id, word) in [
        ("/run/netns/host", host, "host network namespace"),
        ("/proc/self/ns/net", host, "host network namespace"),
        ("/proc/1/ns/net", init, "init (pid 1)"),
        ("/run/netns/alias", init, "net:[4026531840]"),
    ] {
        let p = NetnsPath::parse("netns", path).unwrap();
        let e = check_netns_identity(&p, id, &reserved).unwrap_err();
        assert_eq!((e.field, e.value.as_str()), ("netns", path));
        assert!(e.to_string().contains(word), "{e}");
    }
    let c1 = NetnsPath::parse("netns", "/run/netns/c1").unwrap();
    let other = NetnsId {
        dev: 4,
        ino: 4026532999,
    };
    assert!(check_netns_identity(&c1, other, &reserved).is_ok());
    // Same inode on another device is another namespace.
    let elsewhere = NetnsId {
        dev: 5,
        ino: host.ino,
    };
    assert!(check_netns_identity(&c1, elsewhere, &reserved).is_ok());
}

#[test]
fn ports_owned_by_host_sockets_are_refused() {
    let listen = |p: Protocol, a: &str| Listener {
        protocol: p,
        local: a.parse().unwrap(),
    };
    let host = [
        listen(Protocol::Tcp, "0.0.0.0:22"),
        listen(Protocol::Tcp, "127.0.0.1:631"),
        listen(Protocol::Udp, "127.0.0.53:53"),
        listen(Protocol::Tcp, "[::]:8443"),
    ];
    let port = |p, h| PortSpec::new(p, h, 80).unwrap();
    for (p, h, bound) in [
        (Protocol::Tcp, 22, "0.0.0.0:22"),
        (Protocol::Tcp, 631, "127.0.0.1:631"),
        (Protocol::Udp, 53, "127.0.0.53:53"),
        (Protocol::Tcp, 8443, "[::]:8443"),
    ] {
        let e = check_listeners(&[port(Protocol::Tcp, 8080), port(p, h)], &host).unwrap_err();
        assert_eq!(e.class(), ErrorClass::AlreadyExists, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("host port {h}/")) && msg.contains(bound),
            "{msg}"
        );
    }
    // Other protocol, other port: free.
    let free = [
        port(Protocol::Udp, 22),
        port(Protocol::Tcp, 53),
        port(Protocol::Tcp, 8080),
    ];
    assert!(check_listeners(&free, &host).is_ok());
    // A socket on one address and a port on another do not meet.
    let on = |ip: &str, p: PortSpec| p.on(Some(ip.parse().unwrap()));
    let beside = [
        on("10.1.253.101", port(Protocol::Tcp, 631)),
        on("127.0.0.1", port(Protocol::Udp, 53)),
    ];
    assert!(check_listeners(&beside, &host).is_ok());
    let same = [on("127.0.0.1", port(Protocol::Tcp, 631))];
    assert!(check_listeners(&same, &host).is_err());
    let every = [on("10.1.253.101", port(Protocol::Tcp, 22))];
    assert!(
        check_listeners(&every, &host).is_err(),
        "0.0.0.0:22 meets it"
    );
}

#[test]
fn a_port_on_one_address_needs_an_address_of_the_host() {
    let facts = host();
    let port = |ip: &str| {
        PortSpec::new(Protocol::Tcp, 8080, 80)
            .unwrap()
            .on(Some(ip.parse().unwrap()))
    };
    for ok in ["10.1.253.101", "127.0.0.1", "127.0.0.2", "fd00:1:253::101"] {
        assert!(
            check_host_ips(&[port(ok)], &facts.addresses).is_ok(),
            "{ok}"
        );
    }
    for (bad, why) in [
        ("10.1.253.102", "not an address of the host"),
        ("203.0.113.10", "not an address of the host"),
        ("::1", "never routes ::1"),
    ] {
        let e = check_host_ips(&[port(bad)], &facts.addresses).unwrap_err();
        assert_eq!(e.field, "host_ip");
        assert!(e.reason.contains(why), "{bad}: {e}");
    }
}

#[test]
fn caller_caused_kernel_errors_have_their_class() {
    let taken = Error::Link(trellis_link::LinkError::AlreadyExists {
        name: "eth0 in /run/netns/c1".into(),
    });
    assert_eq!(taken.class(), ErrorClass::AlreadyExists);
    let einval = trellis_link::LinkError::Kernel(trellis_link::KernelError {
        op: "create bridge",
        subject: "br0".into(),
        source: std::io::Error::from_raw_os_error(22),
    });
    let name = IfName::parse("bridge", "br0").unwrap();
    let e = crate::guard::refused("bridge", &name)(einval);
    assert_eq!(e.class(), ErrorClass::InvalidArgument, "{e}");
    assert!(
        e.to_string()
            .starts_with("bridge \"br0\": the kernel refused it"),
        "{e}"
    );
    // Any other errno is trellis's or the kernel's fault, not the caller's.
    let eio = trellis_link::LinkError::Kernel(trellis_link::KernelError {
        op: "create bridge",
        subject: "br0".into(),
        source: std::io::Error::from_raw_os_error(5),
    });
    assert_eq!(
        crate::guard::refused("bridge", &name)(eio).class(),
        ErrorClass::Internal
    );
}
