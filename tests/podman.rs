//! A real container runtime on trellis (issue 14, item 4): Debian's podman
//! 4.3 with its CNI backend and runc runs busybox containers on trellis
//! networks through `trellis-cni`, from nothing but a conflist and the
//! binary in a CNI plugin directory, inside a host namespace the test makes
//! (trellis_testlab::podman: all of podman's state in a temporary directory
//! and a mount namespace of its own; trellisd runs in the same namespaces,
//! as it would on the host, so it sees the container namespaces podman
//! mounts).
//!
//! For a bridge and a routed network: `podman run` gets an address of the
//! network, reaches a second container and a PC outside the host, publishes
//! a port (`-p`) that the PC reaches, and `podman rm` leaves nothing behind
//! (no endpoint, veth, trellis route, nftables port element or address).
//! Podman's libcni (1.1.2) speaks CNI ≤ 1.0.0, so the conflists are 1.0.0;
//! GC and STATUS are proven by `tests/cni.rs`.

mod daemons;

use daemons::binary;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use trellis_testlab::Netns;
use trellis_testlab::daemon::Daemon;
use trellis_testlab::podman::{BUSYBOX_IMAGE, Podman};

/// The host's address towards the PC, and the PC's.
const HOST_UPLINK: &str = "10.98.0.1";
const PC: &str = "10.98.0.2";

fn conflist(name: &str, socket: &Path, plugin: serde_json::Value) -> serde_json::Value {
    let mut p = json!({
        "type": "trellis-cni",
        "socket": socket.display().to_string(),
        "capabilities": {"portMappings": true, "ips": true, "mac": true}
    });
    for (k, v) in plugin.as_object().unwrap() {
        p[k] = v.clone();
    }
    json!({"cniVersion": "1.0.0", "name": name, "plugins": [p]})
}

// busybox's `wget -T` crashes (Debian 12's busybox-static, seen here):
// every wget here goes without it.

/// The container's IPv4 address on eth0 (`ip -4 -o addr`).
fn ipv4_of(out: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet in {out:?}"))
        .to_owned()
}

struct Lab {
    host: Netns,
    pc: Netns,
    podman: Podman,
    trellisd: Daemon,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn lab() -> Lab {
    let host = Netns::new("pmh");
    let pc = Netns::new("pmpc");
    host.veth_to("up0", &pc, "eth0");
    host.ip(&format!("addr add {HOST_UPLINK}/24 dev up0"));
    host.ip("link set up0 up");
    pc.ip(&format!("addr add {PC}/24 dev eth0"));
    pc.ip("link set eth0 up");
    pc.ip(&format!("route add default via {HOST_UPLINK}"));
    let dir = tempfile::tempdir().unwrap();
    // The CNI plugin directory: trellis-cni and nothing else of ours.
    let bin = dir.path().join("cni-bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy(
        binary("TRELLIS_CNI_BIN", "trellis-cni"),
        bin.join("trellis-cni"),
    )
    .unwrap();
    let podman = Podman::new(host.name(), &bin).expect("podman harness");
    podman
        .import_busybox(BUSYBOX_IMAGE)
        .expect("import busybox");
    let socket = dir.path().join("trellisd.sock");
    let mut cmd = podman.enter(&binary("TRELLISD_BIN", "trellisd"));
    cmd.args(["--node", "podman"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--socket")
        .arg(&socket)
        .env("RUST_LOG", "info");
    let mut trellisd = Daemon::spawn(
        "trellisd",
        cmd,
        socket.clone(),
        dir.path().join("trellisd.log"),
    );
    trellisd.wait_ready();
    Lab {
        host,
        pc,
        podman,
        trellisd,
        socket,
        _dir: dir,
    }
}

impl Lab {
    fn podman_ok(&self, args: &[&str]) -> String {
        match self.podman.run(args) {
            Ok(out) => out.stdout,
            Err(e) => panic!(
                "podman run {args:?}: {e}\ntrellisd log:\n{}",
                self.trellisd.log()
            ),
        }
    }

    /// What trellis holds in the host namespace: veths (but the uplink),
    /// routes of its own protocol to single addresses, addresses on links,
    /// and every element of its nftables sets and maps.
    fn state(&self) -> Vec<String> {
        let mut left = Vec::new();
        let veths = self.host.ip("-o link show type veth");
        left.extend(
            veths
                .lines()
                .filter(|l| !l.contains(" up0@"))
                .map(|l| format!("veth: {l}")),
        );
        let addrs: serde_json::Value =
            serde_json::from_str(&self.host.ip("-j addr show scope global")).unwrap();
        for link in addrs.as_array().unwrap() {
            for a in link["addr_info"].as_array().unwrap() {
                left.push(format!(
                    "address: {} {}/{}",
                    link["ifname"], a["local"], a["prefixlen"]
                ));
            }
        }
        // Routes to single container addresses (routed mode's /32s).
        let routes = self.host.ip("-4 route show proto 116");
        left.extend(
            routes
                .lines()
                .filter(|l| !l.starts_with("blackhole"))
                .filter(|l| {
                    l.split_whitespace()
                        .next()
                        .is_some_and(|d| !d.contains('/'))
                })
                .map(|l| format!("route: {l}")),
        );
        let nft = self.host.exec_ok(&["nft", "-j", "list", "ruleset"]);
        let j: serde_json::Value = serde_json::from_str(&nft).unwrap();
        for item in j["nftables"].as_array().unwrap() {
            if let Some(m) = item.get("map").or_else(|| item.get("set"))
                && m["table"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("trellis"))
                && m["elem"].as_array().is_some_and(|e| !e.is_empty())
            {
                left.push(format!("nft {} {}: {}", m["table"], m["name"], m["elem"]));
            }
        }
        left
    }

    /// Waits until trellis holds no endpoint and the host is as `before`
    /// (trellisd deletes retired veths in batches, just after answering).
    fn settled(&self, before: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.state();
            let n = self.endpoints();
            if n == 0 && now == before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "10 s after podman rm: {n} endpoints; new: {:#?}; gone: {:#?}\ntrellisd log:\n{}",
                now.iter()
                    .filter(|s| !before.contains(s))
                    .collect::<Vec<_>>(),
                before
                    .iter()
                    .filter(|s| !now.contains(s))
                    .collect::<Vec<_>>(),
                self.trellisd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoints(&self) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = trellis_proto::connect_unix(&self.socket).await.unwrap();
            c.list_endpoints(trellis_proto::v1::ListEndpointsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .endpoints
                .len()
        })
    }

    /// Runs the whole check on network `net` whose addresses are in
    /// `prefix` (text prefix of the address), publishing `port`.
    fn exercise(&self, net: &str, prefix: &str, port: u16) {
        // A first container creates the network from the conflist; once it
        // is gone, what is left is the network's own state.
        self.podman_ok(&["--rm", "--network", net, BUSYBOX_IMAGE, "true"]);
        std::thread::sleep(Duration::from_millis(500));
        let before = self.state();
        // A server with a page, detached, publishing port → 80.
        let publish = format!("{port}:80");
        let srv = format!("srv-{net}");
        self.podman_ok(&[
            "-d", "--name", &srv, "--network", net, "-p", &publish, BUSYBOX_IMAGE, "sh", "-c",
            "mkdir -p /www && echo hello-from-trellis > /www/index.html && exec httpd -f -p 80 -h /www",
        ]);
        let out = self
            .podman
            .podman(&["exec", &srv, "ip", "-4", "-o", "addr", "show", "eth0"])
            .expect("podman exec");
        let srv_ip = ipv4_of(&out.stdout);
        assert!(srv_ip.starts_with(prefix), "{srv_ip} not in {prefix}");
        let srv_addr = srv_ip.split('/').next().unwrap().to_owned();

        // A second container: its own address, reaches the server and the PC.
        let out = self.podman_ok(&[
            "--rm",
            "--network",
            net,
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            &format!(
                "ip -4 -o addr show eth0 && wget -q -O - http://{srv_addr}/ && ping -c 1 -W 5 {PC}"
            ),
        ]);
        let client_ip = ipv4_of(&out);
        assert!(
            client_ip.starts_with(prefix) && client_ip != srv_ip,
            "{out}"
        );
        assert!(out.contains("hello-from-trellis"), "{out}");
        assert!(out.contains("1 packets received"), "{out}");

        // The PC reaches the published port on the host's address.
        let page = self.pc.exec_ok(&[
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{HOST_UPLINK}:{port}/"),
        ]);
        assert!(page.contains("hello-from-trellis"), "{page}");

        // While the server runs trellis holds its veth and its published
        // port (so the check below has something to find gone).
        let during = self.state();
        let new: Vec<&String> = during.iter().filter(|s| !before.contains(s)).collect();
        assert!(
            new.iter().any(|s| s.starts_with("veth: "))
                && new
                    .iter()
                    .any(|s| s.starts_with("nft ") && s.contains(&port.to_string())),
            "no veth or port element for the server: {new:#?}"
        );
        assert_eq!(self.endpoints(), 1);

        // podman rm: nothing of either container is left.
        self.podman
            .podman(&["rm", "-f", "-t", "0", &srv])
            .expect("podman rm");
        self.settled(&before);
    }
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, podman and runc, builds network namespaces; scripts/test runs it"
)]
#[test]
fn podman_runs_containers_on_trellis_bridge_and_routed_networks() {
    let lab = lab();
    lab.podman
        .write_conflist(
            "trellis-br",
            &conflist(
                "trellis-br",
                &lab.socket,
                json!({"mode": "bridge", "subnet": "10.89.0.0/24", "bridge": "trpm0"}),
            ),
        )
        .unwrap();
    lab.podman
        .write_conflist(
            "trellis-rt",
            &conflist(
                "trellis-rt",
                &lab.socket,
                json!({"mode": "routed", "subnets": ["10.245.0.0/24"]}),
            ),
        )
        .unwrap();
    // podman lists them as networks of its CNI backend.
    let nets = lab
        .podman
        .podman(&["network", "ls", "--format", "{{.Name}}"])
        .unwrap()
        .stdout;
    assert!(
        nets.contains("trellis-br") && nets.contains("trellis-rt"),
        "{nets}"
    );

    lab.exercise("trellis-br", "10.89.0.", 18080);
    lab.exercise("trellis-rt", "10.245.0.", 18081);

    // The two networks were created by the plugin from the conflists.
    let out = lab.host.ip("-o link show trpm0");
    assert!(out.contains("trpm0"), "{out}");
    drop(lab);
}
