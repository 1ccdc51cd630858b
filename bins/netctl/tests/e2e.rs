//! End to end: the netctl binary drives a real trellisd, which runs in a test
//! network namespace (never the machine's own) with its state in a temporary
//! directory. Needs root; fails loudly without it.

mod tls;
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use trellis_testlab::{Netns, require_root, unique_name};
use util::{Daemon, NETCTL};

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn bridge_network_with_a_published_port_through_netctl() {
    require_root();
    let d = Daemon::start();
    let bridge = unique_name("tb");
    let created = d.ok(&[
        "network",
        "create",
        "front",
        "--mode",
        "bridge",
        "--subnet",
        "192.168.169.0/24",
        "--bridge",
        &bridge,
    ]);
    assert!(
        created.contains("Name:") && created.contains("front"),
        "{created}"
    );
    // The bridge is in trellisd's namespace.
    assert!(d.ns.ip(&format!("link show {bridge}")).contains(&bridge));
    let ls = d.ok(&["network", "ls"]);
    assert!(ls.starts_with("NAME "), "{ls}");
    assert!(ls.lines().nth(1).unwrap().starts_with("front "), "{ls}");
    // A second network that may reach the first, and an internal one.
    let (side, closed) = (unique_name("tb"), unique_name("tb"));
    d.ok(&[
        "network",
        "create",
        "side",
        "--subnet",
        "192.168.171.0/24",
        "--bridge",
        &side,
        "--reach",
        "front",
    ]);
    d.ok(&[
        "network",
        "create",
        "closed",
        "--subnet",
        "192.168.172.0/24",
        "--bridge",
        &closed,
        "--internal",
    ]);
    let nets: serde_json::Value =
        serde_json::from_str(&d.ok(&["network", "ls", "-o", "json"])).expect("json");
    let by_name = |n: &str| {
        nets.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
    };
    assert_eq!(
        by_name("side").expect("side")["reach"],
        serde_json::json!(["front"])
    );
    assert_eq!(by_name("closed").expect("closed")["internal"], true);
    d.ok(&["network", "rm", "side"]);
    d.ok(&["network", "rm", "closed"]);

    let c1 = Netns::new("c1");
    d.ok(&[
        "endpoint",
        "attach",
        "--network",
        "front",
        "--container",
        "c1",
        "--netns",
        &c1.path_str(),
        "-p",
        "8081:80",
        "-p",
        "127.0.0.1:8082:80",
        "--label",
        "app=web",
    ]);
    let list: serde_json::Value =
        serde_json::from_str(&d.ok(&["endpoint", "ls", "-o", "json"])).expect("json");
    let eps = list.as_array().expect("an array");
    assert_eq!(eps.len(), 1, "{list}");
    let ep = &eps[0];
    assert_eq!(ep["container_id"], "c1");
    assert_eq!(ep["network"], "front");
    assert_eq!(ep["labels"]["app"], "web");
    assert_eq!(ep["ports"][0]["host_port"], 8081);
    assert_eq!(ep["ports"][0]["container_port"], 80);
    assert_eq!(ep["ports"][0]["protocol"], "tcp");
    assert_eq!(ep["ports"][1]["host_ip"], "127.0.0.1");
    assert_eq!(ep["ports"][1]["host_port"], 8082);
    let addr = ep["addresses"][0].as_str().expect("an address");
    assert!(addr.starts_with("192.168.169."), "{addr}");
    // The address is really on the container's interface.
    assert!(c1.ip("-4 addr show dev eth0").contains(addr), "{addr}");

    assert_eq!(d.ok(&["check", "c1"]), "c1: ok\n");
    let yaml = d.ok(&["endpoint", "inspect", "c1", "-o", "yaml"]);
    assert!(yaml.contains("container_id: c1\n"), "{yaml}");

    // Refused while an endpoint is attached: FAILED_PRECONDITION, exit 7.
    let (code, err) = d.fails(&["network", "rm", "front"]);
    assert_eq!(code, 7, "{err}");
    assert!(err.starts_with("error: FAILED_PRECONDITION: "), "{err}");

    let host_if = ep["host_ifname"].as_str().expect("a host interface");
    assert!(d.ns.ip(&format!("link show {host_if}")).contains(host_if));
    assert_eq!(d.ok(&["endpoint", "detach", "c1"]), "c1\n");
    let gone = d.ns.exec(&["ip", "link", "show", host_if]);
    assert!(!gone.status.success(), "{host_if} is left after detach");
    assert_eq!(d.ok(&["network", "rm", "front"]), "front\n");
    let status: serde_json::Value =
        serde_json::from_str(&d.ok(&["status", "-o", "json"])).expect("json");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["networks"], 0, "{status}");
    assert_eq!(status["endpoints"], 0, "{status}");
    assert_eq!(status["node"], "e2e", "{status}");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn server_errors_reach_stderr_with_their_code() {
    require_root();
    let d = Daemon::start();
    let c1 = Netns::new("c1");
    d.ok(&[
        "network",
        "create",
        "n1",
        "--subnet",
        "10.99.0.0/24",
        "--bridge",
        &unique_name("tb"),
    ]);
    let attach = |ifname: &str, network: &str| {
        d.fails(&[
            "endpoint",
            "attach",
            "--network",
            network,
            "--container",
            "c1",
            "--netns",
            &c1.path_str(),
            "--ifname",
            ifname,
        ])
    };
    let (code, err) = attach("a/b", "n1");
    assert_eq!(code, 4, "{err}");
    assert!(err.starts_with("error: INVALID_ARGUMENT: "), "{err}");
    assert!(
        err.contains("a/b"),
        "the message names the bad value: {err}"
    );

    let (code, err) = attach("eth0", "nosuch");
    assert_eq!(code, 5, "{err}");
    assert!(
        err.starts_with("error: NOT_FOUND: ") && err.contains("nosuch"),
        "{err}"
    );

    let (code, err) = d.fails(&[
        "network",
        "create",
        "n1",
        "--subnet",
        "10.98.0.0/24",
        "--bridge",
        &unique_name("tb"),
    ]);
    assert_eq!(code, 6, "{err}");
    assert!(err.starts_with("error: ALREADY_EXISTS: "), "{err}");

    // Refused locally, before anything is sent: exit 2.
    let (code, err) = d.fails(&[
        "endpoint",
        "attach",
        "--network",
        "n1",
        "--container",
        "c1",
        "--netns",
        "/x",
        "-p",
        "8080:0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("publish spec \"8080:0\""), "{err}");
    assert_eq!(
        d.ok(&["endpoint", "ls"]).lines().count(),
        1,
        "nothing attached"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn gc_keeps_what_it_is_told_and_watch_streams_events() {
    require_root();
    let d = Daemon::start();
    let (a, b) = (Netns::new("ga"), Netns::new("gb"));
    d.ok(&[
        "network",
        "create",
        "g",
        "--subnet",
        "10.97.0.0/24",
        "--bridge",
        &unique_name("tb"),
    ]);
    // Replayed events come first, so the first one shows the stream is live.
    let mut watch = Watch::start(&d);
    assert_eq!(watch.next(), "network_created");
    for (id, ns) in [("ga", &a), ("gb", &b)] {
        d.ok(&[
            "endpoint",
            "attach",
            "--network",
            "g",
            "--container",
            id,
            "--netns",
            &ns.path_str(),
        ]);
    }
    let gc: serde_json::Value =
        serde_json::from_str(&d.ok(&["gc", "--keep", "ga", "-o", "json"])).expect("json");
    assert_eq!(gc["removed"].as_array().map(Vec::len), Some(1), "{gc}");
    assert_eq!(gc["removed"][0]["container_id"], "gb", "{gc}");
    let left = d.ok(&["endpoint", "ls"]);
    assert!(left.contains("\nga ") && !left.contains("\ngb "), "{left}");

    let kinds: Vec<String> = (0..3).map(|_| watch.next()).collect();
    assert_eq!(
        kinds,
        [
            "endpoint_attached",
            "endpoint_attached",
            "endpoint_detached"
        ]
    );
}

/// A running `netctl watch --replay -o json`, its events' kinds read by a
/// thread; killed on drop.
struct Watch {
    child: std::process::Child,
    kinds: mpsc::Receiver<String>,
}

impl Watch {
    fn start(d: &Daemon) -> Self {
        let mut child = Command::new(NETCTL)
            .arg("--socket")
            .arg(d.socket())
            .args(["watch", "--replay", "-o", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn netctl watch");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, kinds) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON per line");
                let kind = v["kind"].as_str().unwrap_or_default().to_owned();
                if tx.send(kind).is_err() {
                    break;
                }
            }
        });
        Watch { child, kinds }
    }

    fn next(&mut self) -> String {
        self.kinds
            .recv_timeout(Duration::from_secs(10))
            .expect("an event within 10 s")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Routed mode (Calico's model) through netctl and trellisd: a dual-stack pod
/// gets a /32 and a /128, its default routes via the link-local gateways, and
/// reaches the host over both families; detach and rm leave nothing behind.
#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root and builds network namespaces; scripts/test runs it"
)]
#[test]
fn routed_network_through_netctl() {
    use trellis_testlab::{TcpServer, seen_ip, tcp_request};
    require_root();
    let d = Daemon::start();
    d.ns.ip("link add uplink type veth peer name uplink-peer");
    d.ns.ip("link set uplink up");
    d.ns.ip("addr add 10.1.253.101/24 dev uplink");
    d.ns.ip("addr add 2001:db8:253::101/64 dev uplink nodad");
    d.ok(&[
        "network",
        "create",
        "pods",
        "--mode",
        "routed",
        "--subnet",
        "10.244.0.0/16",
        "--subnet",
        "fd00:10:244::/56",
    ]);
    let pod = Netns::new("pod");
    d.ok(&[
        "endpoint",
        "attach",
        "--network",
        "pods",
        "--container",
        "pod1",
        "--netns",
        &pod.path_str(),
    ]);
    let ep: serde_json::Value =
        serde_json::from_str(&d.ok(&["endpoint", "inspect", "pod1", "-o", "json"])).unwrap();
    let ep = if ep.is_array() { ep[0].clone() } else { ep };
    let addrs: Vec<&str> = ep["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        addrs
            .iter()
            .any(|a| a.starts_with("10.244.") && a.ends_with("/32")),
        "{addrs:?}"
    );
    assert!(
        addrs
            .iter()
            .any(|a| a.starts_with("fd00:10:244:") && a.ends_with("/128")),
        "{addrs:?}"
    );
    let routes = pod.ip("route show");
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    let routes6 = pod.ip("-6 route show");
    assert!(
        routes6.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
        "{routes6}"
    );
    for host in ["10.1.253.101", "2001:db8:253::101"] {
        let ip: std::net::IpAddr = host.parse().unwrap();
        let server = TcpServer::start(&d.ns, (ip, 9000).into(), "host");
        let reply = tcp_request(&pod, server.addr()).expect("the pod reaches the host");
        let mine = addrs
            .iter()
            .find(|a| a.contains(':') == host.contains(':'))
            .unwrap();
        assert_eq!(seen_ip(&reply).to_string(), mine.split('/').next().unwrap());
    }
    assert_eq!(d.ok(&["check", "pod1"]), "pod1: ok\n");
    let host_if = ep["host_ifname"].as_str().unwrap().to_owned();
    d.ok(&["endpoint", "detach", "pod1"]);
    d.ok(&["network", "rm", "pods"]);
    assert!(!d.ns.ip("-o link show").contains(&host_if));
    assert_eq!(d.ns.ip("route show proto 116"), "");
    let nft = d.ns.exec_ok(&["nft", "list", "ruleset"]);
    assert!(!nft.contains("trellis"), "{nft}");
}
