//! The lab of `host_safety`: a host namespace with a realistic uplink to a
//! router namespace, and two more ways to reach the host's namespace (a bind
//! mount, a process inside it).

use std::process::{Child, Command};
use trellis_testlab::{Netns, TcpServer, tcp_request, unique_name};

/// The router's service, reached from the host over the uplink.
pub const ROUTER_SERVICE: &str = "10.1.253.1:7000";
/// A service of the host's own (think sshd), reached from the router.
pub const HOST_SERVICE: &str = "10.1.253.101:2222";

/// The host, its router, and their services.
pub struct Lab {
    pub host: Netns,
    pub router: Netns,
    _services: [TcpServer; 2],
}

pub fn uplink() -> Lab {
    let (host, router) = (Netns::new("host"), Netns::new("router"));
    host.veth_to("up0", &router, "up0r");
    router.ip("addr add 10.1.253.1/24 dev up0r");
    router.ip("addr add fd00:1:253::1/64 dev up0r nodad");
    host.ip("addr add 10.1.253.101/24 dev up0");
    host.ip("addr add fd00:1:253::101/64 dev up0 nodad");
    host.ip("addr add 10.77.0.1/32 dev lo");
    host.ip("route add default via 10.1.253.1");
    host.ip("route add 10.0.0.0/8 via 10.1.253.1");
    host.ip("route add 192.0.2.0/24 via 172.31.1.1 dev up0 onlink");
    host.ip("neigh replace 10.1.253.50 lladdr 02:00:00:00:00:50 dev up0 nud permanent");
    let services = [
        TcpServer::start(&router, ROUTER_SERVICE.parse().unwrap(), "router"),
        TcpServer::start(&host, "0.0.0.0:2222".parse().unwrap(), "sshd"),
    ];
    Lab {
        host,
        router,
        _services: services,
    }
}

impl Lab {
    /// Both directions of the uplink carry traffic, and the host's own
    /// service still answers itself (not a DNAT to a container).
    pub fn traffic_ok(&self) -> Result<(), String> {
        let out = tcp_request(&self.host, ROUTER_SERVICE.parse().unwrap());
        let back = tcp_request(&self.router, HOST_SERVICE.parse().unwrap());
        match (out, back) {
            (Ok(a), Ok(b)) if a.starts_with("router") && b.starts_with("sshd") => Ok(()),
            other => Err(format!("uplink traffic broken: {other:?}")),
        }
    }
}

/// A second path to a namespace: a bind mount under `/run/netns`, removed on
/// drop.
pub struct Alias(pub String);

impl Alias {
    pub fn of(ns: &Netns) -> Self {
        let path = format!("/run/netns/{}-alias", unique_name("tl"));
        std::fs::write(&path, b"").unwrap();
        let ok = Command::new("mount")
            .args(["--bind", &ns.path_str(), &path])
            .status()
            .unwrap();
        assert!(ok.success(), "bind mount of {}", ns.name());
        Alias(path)
    }
}

impl Drop for Alias {
    fn drop(&mut self) {
        Command::new("umount").arg(&self.0).status().ok();
        std::fs::remove_file(&self.0).ok();
    }
}

/// A process of the test's own running inside a namespace (so that
/// `/proc/<pid>/ns/net` reaches it), killed by its pid on drop.
pub struct Inside(Child);

impl Inside {
    pub fn of(ns: &Netns) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "sleep", "600"])
            .spawn()
            .unwrap();
        // `ip netns exec` enters the namespace and then execs, keeping its pid.
        std::thread::sleep(std::time::Duration::from_millis(200));
        Inside(child)
    }

    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}
