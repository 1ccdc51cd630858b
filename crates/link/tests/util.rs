//! Helpers for the privileged tests: a host and a container namespace, and
//! parsed names.

use trellis_link::{NetlinkLinks, Ns};
use trellis_testlab::Netns;
use trellis_types::{IfName, NetnsPath};

/// Parses an interface name (test input is known good).
pub fn ifn(s: &str) -> IfName {
    IfName::parse("ifname", s).unwrap()
}

/// The path of a test namespace as trellis takes it.
pub fn nspath(ns: &Netns) -> NetnsPath {
    NetnsPath::parse("netns", &ns.path_str()).unwrap()
}

/// The container namespace as an operation target.
pub fn at(ns: &Netns) -> Ns {
    Ns::Path(nspath(ns))
}

/// A "host" namespace with trellis's real implementation pointed at it.
pub struct Lab {
    /// The namespace standing in for the host.
    pub host: Netns,
    /// The implementation under test, with `host` as its host.
    pub links: NetlinkLinks,
}

impl Lab {
    /// Builds the host namespace (panics unless root).
    pub async fn new() -> Self {
        trellis_testlab::require_root();
        let host = Netns::new("host");
        let links = NetlinkLinks::in_netns(&nspath(&host))
            .await
            .expect("netlink in host netns");
        Lab { host, links }
    }
}

/// The `link/ether` MAC in `ip link show` output.
pub fn mac_in(ip_output: &str) -> String {
    let mut words = ip_output.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no MAC in {ip_output}"))
        .to_owned()
}
