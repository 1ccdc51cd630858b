//! `trellis_testlab::podman`, checked: podman runs busybox containers on the
//! CNI reference `bridge` plugin, and on a netavark network, inside a test's
//! namespace, keeps its state in the harness's directory, and leaves nothing
//! behind when dropped.
//!
//! Each test has its own host namespace, so all use 10.77.0.0/24; bridge
//! names are unique anyway.

use serde_json::json;
use std::path::Path;
use std::time::Instant;
use trellis_testlab::podman::{BUSYBOX_IMAGE, Backend, Podman, conmon_processes_of};
use trellis_testlab::{Netns, require_root, unique_name};

const SUBNET: &str = "10.77.0.0/24";
/// Directories podman 4.3 would write to on its own; the harness's mount
/// namespace keeps them off the machine.
const MACHINE_DIRS: [&str; 3] = ["/var/lib/containers", "/var/lib/cni", "/run/containers"];

/// A `bridge` + `host-local` + `portmap` network named `name` on a fresh
/// bridge. No ipMasq: nothing leaves the test namespace anyway.
fn bridge_network(name: &str) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": unique_name("pb"),
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
}

/// A harness in `host` with busybox imported and the network `net`.
fn harness(host: &Netns, net: &str) -> Podman {
    let podman = Podman::new(host.name(), Path::new("/usr/lib/cni")).unwrap();
    podman.import_busybox(BUSYBOX_IMAGE).unwrap();
    podman.write_conflist(net, &bridge_network(net)).unwrap();
    podman
}

fn veths(host: &Netns) -> String {
    host.ip("-o link show type veth")
}

/// The machine directories that do not exist now.
fn absent_machine_dirs() -> Vec<&'static str> {
    MACHINE_DIRS
        .into_iter()
        .filter(|d| !Path::new(d).exists())
        .collect()
}

/// After a harness in `dir` is dropped: no directory, no conmon.
fn assert_gone(dir: &Path) {
    assert!(!dir.exists(), "{} is still there", dir.display());
    let conmons = conmon_processes_of(dir);
    assert!(conmons.is_empty(), "conmon processes {conmons:?} survived");
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs podman; scripts/test runs it"
)]
#[test]
fn a_busybox_container_gets_an_address_from_the_bridge_plugin_in_the_test_namespace() {
    require_root();
    let absent = absent_machine_dirs();
    let host = Netns::new("pmhost");
    let podman = harness(&host, "tnet");
    let dir = podman.dir().to_path_buf();

    let info = podman.info().unwrap();
    let under_dir = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|p| p.starts_with(&*dir.to_string_lossy()))
    };
    assert!(under_dir(&info["store"]["graphRoot"]), "{}", info["store"]);
    assert!(under_dir(&info["store"]["runRoot"]), "{}", info["store"]);
    assert_eq!(info["store"]["graphDriverName"], "vfs");
    assert_eq!(info["host"]["networkBackend"], "cni");
    assert_eq!(info["host"]["ociRuntime"]["name"], "runc");
    assert_eq!(info["host"]["cgroupManager"], "cgroupfs");

    podman.run(&["--rm", BUSYBOX_IMAGE, "true"]).unwrap();
    let out = podman
        .run(&[
            "--rm",
            "--network",
            "tnet",
            BUSYBOX_IMAGE,
            "ip",
            "-4",
            "addr",
            "show",
            "eth0",
        ])
        .unwrap();
    assert!(out.stdout.contains("inet 10.77.0."), "{}", out.stdout);
    // The bridge is in the test's namespace, with the gateway address.
    assert!(host.ip("-4 -o addr show").contains("inet 10.77.0.1/24"));

    let started = Instant::now();
    podman
        .run(&["--rm", "--network", "tnet", BUSYBOX_IMAGE, "true"])
        .unwrap();
    eprintln!(
        "podman run --rm --network tnet {BUSYBOX_IMAGE} true: {:?}",
        started.elapsed()
    );

    assert_eq!(
        veths(&host),
        "",
        "a container's veth is left in the host namespace"
    );
    drop(podman);
    assert_gone(&dir);
    let created: Vec<_> = absent
        .into_iter()
        .filter(|d| Path::new(d).exists())
        .collect();
    assert!(
        created.is_empty(),
        "podman created {created:?} on the machine"
    );
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs podman; scripts/test runs it"
)]
#[test]
fn dropping_the_harness_stops_running_containers_and_removes_their_veths() {
    require_root();
    let host = Netns::new("pmdrop");
    let podman = harness(&host, "dnet");
    let dir = podman.dir().to_path_buf();
    let id = podman
        .run(&[
            "-d",
            "--network",
            "dnet",
            BUSYBOX_IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
        ])
        .unwrap()
        .stdout;
    assert!(!id.trim().is_empty());
    // The container answers from its address in the test's namespace.
    let inspect = podman
        .podman(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.Networks.dnet.IPAddress}}",
            id.trim(),
        ])
        .unwrap();
    let ip = inspect.stdout.trim();
    assert!(ip.starts_with("10.77.0."), "{ip}");
    let ping = host.exec(&["ping", "-c", "1", "-W", "2", ip]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    assert!(
        !conmon_processes_of(&dir).is_empty(),
        "no conmon for a running container"
    );
    assert_ne!(veths(&host), "");

    drop(podman);
    assert_gone(&dir);
    assert_eq!(
        veths(&host),
        "",
        "the container's veth outlived the harness"
    );
}

/// The machine's own NAT rules (its namespace, read only) that name netavark.
fn machine_netavark_rules() -> Vec<String> {
    let out = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .expect("run iptables");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("NETAVARK"))
        .map(str::to_owned)
        .collect()
}

#[cfg_attr(
    not(feature = "privileged"),
    ignore = "privileged tier: needs root, builds network namespaces and runs podman; scripts/test runs it"
)]
#[test]
fn a_netavark_harness_runs_a_container_with_its_state_and_rules_in_the_test_namespace() {
    require_root();
    let absent = absent_machine_dirs();
    let machine_rules = machine_netavark_rules();
    let host = Netns::new("pmnv");
    let podman = Podman::with_backend(host.name(), Backend::Netavark).unwrap();
    let dir = podman.dir().to_path_buf();
    assert_eq!(podman.info().unwrap()["host"]["networkBackend"], "netavark");
    podman.import_busybox(BUSYBOX_IMAGE).unwrap();
    assert!(podman.write_conflist("x", &bridge_network("x")).is_err());
    podman
        .podman(&[
            "network",
            "create",
            "--disable-dns",
            "--subnet",
            SUBNET,
            "nvnet",
        ])
        .unwrap();
    assert!(podman.network_config_dir().join("nvnet.json").is_file());

    // A detached container holds the network up: bridge, NAT chains.
    let id = podman
        .run(&["-d", "--network", "nvnet", BUSYBOX_IMAGE, "sleep", "60"])
        .unwrap()
        .stdout;
    let addr = podman
        .podman(&["exec", id.trim(), "ip", "-4", "-o", "addr", "show", "eth0"])
        .unwrap()
        .stdout;
    assert!(addr.contains("inet 10.77.0."), "{addr}");
    assert!(host.ip("-4 -o addr show").contains("inet 10.77.0.1/24"));
    let nat = host.exec_ok(&["iptables", "-t", "nat", "-S"]);
    assert!(
        nat.contains("NETAVARK") && nat.contains("10.77.0.0/24"),
        "{nat}"
    );
    let forward = host.exec_ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(
        forward.trim(),
        "1",
        "netavark turns forwarding on in the test namespace"
    );
    // podman's IPAM database: in the harness, not in the machine's /run.
    let ipam = podman.netavark_run_dir().unwrap().join("ipam.db");
    assert!(ipam.is_file(), "no {}", ipam.display());
    let created: Vec<_> = absent.iter().filter(|d| Path::new(d).exists()).collect();
    assert!(
        created.is_empty(),
        "podman created {created:?} on the machine"
    );

    drop(podman);
    assert_gone(&dir);
    assert_eq!(
        veths(&host),
        "",
        "the container's veth outlived the harness"
    );
    let created: Vec<_> = absent
        .into_iter()
        .filter(|d| Path::new(d).exists())
        .collect();
    assert!(
        created.is_empty(),
        "podman created {created:?} on the machine"
    );
    assert_eq!(
        machine_netavark_rules(),
        machine_rules,
        "netavark touched the machine's NAT table"
    );
}
