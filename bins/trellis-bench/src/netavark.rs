//! The peer: podman's `netavark` (1.4 in Debian 12), driven as podman drives it.
//!
//! `netavark setup <netns>` reads the container's network options as JSON on
//! stdin. Netavark has no IPAM of its own: podman picks the address and passes
//! it as a static IP, so here the benchmark does ([`static_ip`]) and netavark's
//! time excludes allocation. Netavark 1.4 has no "no firewall" driver; a
//! non-internal network gets its NAT rules through the `iptables` binary
//! (checked or added on every setup), an internal one gets no NAT and no
//! default route. Both are measured, and labelled so.

use crate::exec::Exec;
use anyhow::{Result, bail};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use trellis_testlab::Netns;

/// Where Debian (`/usr/lib/podman`) and Fedora (`/usr/libexec/podman`) put it.
pub const CANDIDATES: [&str; 2] = ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"];

/// The bridge netavark creates in the host namespace.
pub const BRIDGE: &str = "nvbr0";

/// The installed netavark binary, or why there is none.
pub fn binary() -> Result<&'static str> {
    match CANDIDATES.iter().find(|p| Path::new(p).exists()) {
        Some(p) => Ok(p),
        None => bail!("netavark not found at {CANDIDATES:?} (Debian package `netavark`)"),
    }
}

/// The address of the `i`th container (0-based) in a /16 starting at `base`:
/// `.0.2` upwards (`.0.1` is the gateway).
pub fn static_ip(base: Ipv4Addr, i: usize) -> Ipv4Addr {
    let n = u32::try_from(i).expect("container index fits in u32") + 2;
    assert!(n < 65535, "a /16 holds 65533 containers");
    Ipv4Addr::from(u32::from(base) + n)
}

/// The network options for container `i`: one bridge network with a gateway,
/// NAT through iptables unless `internal`, and `port` (host port → 80/tcp)
/// published if given (which needs NAT).
pub fn options(base: Ipv4Addr, i: usize, internal: bool, port: Option<u16>) -> String {
    let gateway = Ipv4Addr::from(u32::from(base) + 1);
    serde_json::json!({
        "container_id": format!("{:064x}", i + 1),
        "container_name": format!("bench{i}"),
        "networks": {"bench": {
            "interface_name": "eth0",
            "static_ips": [static_ip(base, i).to_string()],
        }},
        "network_info": {"bench": {
            "name": "bench",
            "id": "b".repeat(64),
            "driver": "bridge",
            "network_interface": BRIDGE,
            "subnets": [{"subnet": format!("{base}/16"), "gateway": gateway.to_string()}],
            "ipv6_enabled": false,
            "internal": internal,
            "dns_enabled": false,
            "ipam_options": {"driver": "host-local"},
        }},
        "port_mappings": port.map(|p| serde_json::json!([{
            "host_ip": "",
            "container_port": 80,
            "host_port": p,
            "range": 1,
            "protocol": "tcp",
        }])).unwrap_or_else(|| serde_json::json!([])),
    })
    .to_string()
}

/// Runs `netavark --config <config_dir> <command> <netns>` (`setup` or
/// `teardown`) from inside `host` with `options` on stdin; returns its time.
pub fn run(
    host: &Netns,
    binary: &str,
    command: &str,
    config_dir: &Path,
    netns: &Path,
    options: &str,
) -> Result<Duration> {
    let exec = Exec {
        program: binary.to_owned(),
        args: vec![
            "--config".into(),
            config_dir.into(),
            command.into(),
            netns.into(),
        ],
        // It runs `iptables` by name: give it the standard PATH.
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        stdin: options.to_owned(),
    };
    Ok(exec.run_in(host)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_ips_skip_network_and_gateway_and_carry_into_the_third_octet() {
        let base = Ipv4Addr::new(10, 88, 0, 0);
        assert_eq!(static_ip(base, 0), Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(static_ip(base, 253), Ipv4Addr::new(10, 88, 0, 255));
        assert_eq!(static_ip(base, 254), Ipv4Addr::new(10, 88, 1, 0));
    }

    #[test]
    fn options_name_one_bridge_network_with_the_static_ip() {
        let v: serde_json::Value =
            serde_json::from_str(&options(Ipv4Addr::new(10, 88, 0, 0), 3, true, None)).unwrap();
        assert_eq!(v["container_id"].as_str().unwrap().len(), 64);
        assert_eq!(v["networks"]["bench"]["static_ips"][0], "10.88.0.5");
        let info = &v["network_info"]["bench"];
        assert_eq!(info["driver"], "bridge");
        assert_eq!(info["internal"], true);
        assert_eq!(info["subnets"][0]["gateway"], "10.88.0.1");
        assert_eq!(v["port_mappings"], serde_json::json!([]));
    }

    #[test]
    fn options_publish_the_port_given() {
        let v: serde_json::Value = serde_json::from_str(&options(
            Ipv4Addr::new(10, 88, 0, 0),
            3,
            false,
            Some(10_003),
        ))
        .unwrap();
        let m = &v["port_mappings"][0];
        assert_eq!(
            (m["host_port"].as_u64(), m["container_port"].as_u64()),
            (Some(10_003), Some(80))
        );
        assert_eq!(
            (m["range"].as_u64(), m["protocol"].as_str()),
            (Some(1), Some("tcp"))
        );
        assert_eq!(v["network_info"]["bench"]["internal"], false);
    }
}
