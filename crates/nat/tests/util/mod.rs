//! Helpers for the privileged tests: inputs, reading the table back with
//! nft(8), and the traffic lab.

mod routed;
mod traffic;

pub use routed::routed;
pub use traffic::traffic;

use trellis_nat::{NetworkNat, NftNat, RoutedPool};
use trellis_testlab::{Netns, require_root};
use trellis_types::{IfName, NetnsPath, PortMapping, Protocol};

/// A fresh namespace and an `NftNat` inside it.
pub fn lab(role: &str) -> (Netns, NftNat) {
    require_root();
    let ns = Netns::new(role);
    let nat = nat_in(&ns);
    (ns, nat)
}

/// An `NftNat` inside `ns`.
pub fn nat_in(ns: &Netns) -> NftNat {
    NftNat::in_netns(&NetnsPath::parse("netns", &ns.path_str()).unwrap()).unwrap()
}

/// `tcp host -> ip:port`.
pub fn tcp(host: u16, ip: &str, port: u16) -> PortMapping {
    PortMapping::new(Protocol::Tcp, host.into(), ip.parse().unwrap(), port.into()).unwrap()
}

/// `udp host -> ip:port`.
pub fn udp(host: u16, ip: &str, port: u16) -> PortMapping {
    PortMapping::new(Protocol::Udp, host.into(), ip.parse().unwrap(), port.into()).unwrap()
}

/// A network.
pub fn net(subnet: &str, bridge: &str, masquerade: bool) -> NetworkNat {
    NetworkNat {
        subnet: subnet.parse().unwrap(),
        bridge: IfName::parse("bridge", bridge).unwrap(),
        masquerade,
        internal: false,
    }
}

/// An interface name.
pub fn ifname(name: &str) -> IfName {
    IfName::parse("ifname", name).unwrap()
}

/// A routed pool.
pub fn pool(cidr: &str, nat_outgoing: bool) -> RoutedPool {
    RoutedPool {
        cidr: cidr.parse().unwrap(),
        nat_outgoing,
    }
}

/// The elements of set or map `name` of trellis's table, as compact JSON, sorted.
pub fn elems(ns: &Netns, name: &str) -> Vec<String> {
    let out = ns.exec_ok(&["nft", "-j", "list", "ruleset"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let objs = v["nftables"].as_array().unwrap();
    let set = objs
        .iter()
        .filter_map(|o| o.get("set").or_else(|| o.get("map")))
        .find(|s| s["table"] == "trellis" && s["name"] == name)
        .unwrap_or_else(|| panic!("no set {name} in {out}"));
    let elems = set
        .get("elem")
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<String> = elems.iter().map(|e| e.to_string()).collect();
    out.sort();
    out
}

/// The chain headers and rules of `nft list table inet trellis`, trimmed.
pub fn rule_lines(ns: &Netns) -> Vec<String> {
    let text = ns.nft_table().expect("table inet trellis exists");
    let mut out = Vec::new();
    let mut in_chain = false;
    for line in text.lines().map(str::trim) {
        in_chain |= line.starts_with("chain ");
        if line == "}" {
            in_chain = false;
        } else if in_chain && !line.is_empty() {
            out.push(line.to_owned());
        }
    }
    out
}

/// `nft list table inet trellis` inside a namespace, if the table exists.
pub trait NftTable {
    /// The table's text, or `None`.
    fn nft_table(&self) -> Option<String>;
}

impl NftTable for Netns {
    fn nft_table(&self) -> Option<String> {
        let out = self.exec(&["nft", "list", "table", "inet", "trellis"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
