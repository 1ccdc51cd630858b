//! The peer: Debian's CNI reference plugins, driven as a runtime drives them.
//!
//! Each ADD or DEL is one exec of the plugin with the CNI environment and the
//! network config on stdin, timed from spawn to exit (see [`crate::exec`]),
//! exactly the cost a runtime pays. The plugin runs inside the benchmark's host
//! namespace because it is spawned from a thread that joined that namespace.

use crate::exec::Exec;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;
use trellis_testlab::Netns;

/// Where Debian's `containernetworking-plugins` puts the plugins.
pub const CNI_PATH: &str = "/usr/lib/cni";

/// The bridge the `bridge` plugin creates in the host namespace.
pub const BRIDGE: &str = "cnibr0";

/// A CNI network config for `plugin` (`bridge` or `ptp`) with `host-local` IPAM
/// and a default route, no masquerade (trellis's network has none either).
pub fn config(plugin: &str, subnet: &str, data_dir: &Path) -> String {
    let extra = if plugin == "bridge" {
        format!(r#""bridge": "{BRIDGE}", "isGateway": true,"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "bench-{plugin}", "type": "{plugin}", {extra}
  "ipMasq": false,
  "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]],
            "routes": [{{"dst": "0.0.0.0/0"}}], "dataDir": "{}"}}}}"#,
        data_dir.display()
    )
}

/// Runs one CNI command (`ADD`/`DEL`) of `plugin` for `container` (interface
/// `eth0` in `netns`) from inside `host`, and returns how long the plugin took.
pub fn run(
    host: &Netns,
    plugin: &str,
    command: &str,
    cfg: &str,
    container: &str,
    netns: &Path,
) -> Result<Duration> {
    Ok(run_output(host, plugin, command, cfg, container, netns)?.0)
}

/// Like [`run`], also returning what the plugin printed (its CNI result).
pub fn run_output(
    host: &Netns,
    plugin: &str,
    command: &str,
    cfg: &str,
    container: &str,
    netns: &Path,
) -> Result<(Duration, String)> {
    let env = [
        ("CNI_COMMAND", command.into()),
        ("CNI_CONTAINERID", container.into()),
        ("CNI_NETNS", netns.into()),
        ("CNI_IFNAME", "eth0".into()),
        ("CNI_PATH", CNI_PATH.into()),
        // portmap runs `iptables` by name.
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".into()),
    ];
    let exec = Exec {
        program: format!("{CNI_PATH}/{plugin}"),
        args: vec![],
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        stdin: cfg.to_owned(),
    };
    exec.run_in(host)
}

/// The config libcni hands `portmap`, second plugin of a conflist whose
/// first is `bridge` (named `name`): the runtime's port mapping injected as
/// `runtimeConfig` (the plugin declares the `portMappings` capability) and
/// the bridge's result as `prevResult`. SNAT for hairpin traffic on, as the
/// plugin's default.
pub fn portmap_config(
    name: &str,
    host_port: u16,
    container_port: u16,
    prev_result: &serde_json::Value,
) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "portmap",
        "capabilities": {"portMappings": true},
        "snat": true,
        "runtimeConfig": {"portMappings": [
            {"hostPort": host_port, "containerPort": container_port, "protocol": "tcp"}
        ]},
        "prevResult": prev_result,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_config_is_json_with_host_local_and_a_default_route() {
        let cfg = config("bridge", "10.88.0.0/16", Path::new("/tmp/x"));
        let v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
        assert_eq!(v["type"], "bridge");
        assert_eq!(v["bridge"], BRIDGE);
        assert_eq!(v["ipMasq"], false);
        assert_eq!(v["ipam"]["type"], "host-local");
        assert_eq!(v["ipam"]["dataDir"], "/tmp/x");
        assert_eq!(v["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        let ptp: serde_json::Value =
            serde_json::from_str(&config("ptp", "10.88.0.0/16", Path::new("/d"))).unwrap();
        assert!(ptp.get("bridge").is_none());
    }

    #[test]
    fn portmap_config_carries_the_mapping_and_the_previous_result() {
        let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/16"}]});
        let v: serde_json::Value =
            serde_json::from_str(&portmap_config("bench-bridge", 10_002, 80, &prev)).unwrap();
        assert_eq!(v["type"], "portmap");
        assert_eq!(v["name"], "bench-bridge");
        assert_eq!(v["capabilities"]["portMappings"], true);
        let m = &v["runtimeConfig"]["portMappings"][0];
        assert_eq!(
            (m["hostPort"].as_u64(), m["containerPort"].as_u64()),
            (Some(10_002), Some(80))
        );
        assert_eq!(m["protocol"], "tcp");
        assert_eq!(v["prevResult"], prev);
    }
}
