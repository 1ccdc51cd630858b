//! What a request could do to the host, judged before anything changes.
//!
//! Design decisions:
//!
//! * **Facts through the seams, judgements as pure functions.** The host's
//!   addresses, its main-table routes, the sockets that own its ports and the
//!   namespaces that are never a container's are read through the
//!   kernel-facing traits (`Links`, `Routes`) into [`HostFacts`]; every check
//!   here is a pure function of a request and those facts, tested by tables
//!   without a kernel (`safety_tests.rs`). The agent reads the facts once per
//!   network creation, and per attach only what an attach can hurt (the
//!   namespace's identity, and the listeners when ports are published).
//! * **Special ranges are refused outright** ([`check_special`]): loopback,
//!   link-local (which holds the routed gateways), multicast, "this network",
//!   class E and broadcast, and IPv6's unspecified, loopback, IPv4-mapped,
//!   link-local and multicast. Private space (RFC 1918, ULA) is what
//!   container networks use and is never refused for what it is.
//! * **A subnet the host uses is refused** ([`check_subnet`]): one that
//!   contains an address of the host, overlaps a directly connected route
//!   (the host would lose that link: a bridge would hand out the host's own
//!   address, a routed block's blackhole would swallow the uplink), or
//!   contains the gateway of one of the host's routes (an `onlink` default
//!   gateway outside every connected subnet, as some clouds configure).
//! * **Routes via a gateway only warn.** A pool inside a VPN's `10.0.0.0/8
//!   via …` is fine for the host, but trellis's more specific routes win for
//!   the pool's addresses; the answer and the log say so.
//! * **What trellis owns is not a conflict here**: its own routes (protocol
//!   116) and the addresses and routes on its bridges and host veths. Overlap
//!   with another trellis network is IPAM's to refuse.

use crate::Error;
use crate::model::PortSpec;
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_link::{HostAddress, Listener, NetnsId, ReservedNetns, is_host_veth_name};
use trellis_route::{HostRoute, ROUTED_GATEWAY_V4, ROUTED_GATEWAY_V6, RTPROT_TRELLIS};
use trellis_types::{IfName, InvalidInput, NetnsPath};

/// What the host uses, as read before a network is created.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostFacts {
    /// Every address of the host.
    pub(crate) addresses: Vec<HostAddress>,
    /// Every route of the host's main table.
    pub(crate) routes: Vec<HostRoute>,
}

impl HostFacts {
    /// Leaves out what trellis owns: its routes, and the addresses and routes
    /// on its bridges (`bridges`) and host veths.
    pub(crate) fn without_trellis(mut self, bridges: &[IfName]) -> Self {
        let ours = |dev: &str| is_host_veth_name(dev) || bridges.iter().any(|b| b.as_str() == dev);
        self.addresses.retain(|a| !ours(&a.dev));
        self.routes.retain(|r| {
            r.protocol != RTPROT_TRELLIS && !r.route.dev.as_ref().is_some_and(|d| ours(d.as_str()))
        });
        self
    }
}

/// The special ranges no container network may overlap, with what each is.
const SPECIAL: [(&str, &str); 10] = [
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (class E and broadcast)"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// Whether two prefixes share an address (never across families).
pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Refuses a subnet that contains a routed gateway (`169.254.1.1`,
/// `fe80::ecee:eeff:feee:eeee`) or overlaps a special range.
pub(crate) fn check_special(field: &'static str, subnet: IpNet) -> Result<(), InvalidInput> {
    let gateways = [IpAddr::V4(ROUTED_GATEWAY_V4), IpAddr::V6(ROUTED_GATEWAY_V6)];
    if let Some(g) = gateways.iter().find(|g| subnet.contains(*g)) {
        let why = format!("contains {g}, the gateway of every routed-mode container");
        return Err(InvalidInput::new(field, subnet, why));
    }
    for (range, what) in SPECIAL {
        let range: IpNet = range.parse().expect("a valid special range");
        if overlaps(&subnet, &range) {
            let why = format!(
                "overlaps the {what} range {range}; container networks use private \
                 space (RFC 1918 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16; ULA fd00::/8)"
            );
            return Err(InvalidInput::new(field, subnet, why));
        }
    }
    Ok(())
}

/// Refuses a subnet that the host uses (see the module docs); returns the
/// warnings for routes via a gateway that trellis's routes will shadow.
pub(crate) fn check_subnet(
    field: &'static str,
    subnet: IpNet,
    host: &HostFacts,
) -> Result<Vec<String>, Error> {
    let conflict = |conflict: String| Error::HostConflict {
        field,
        value: subnet.to_string(),
        conflict,
    };
    if let Some(a) = host
        .addresses
        .iter()
        .find(|a| subnet.contains(&a.addr.addr()))
    {
        return Err(conflict(format!("contains the host's address {a}")));
    }
    // A default route overlaps everything and is what every more specific
    // route is meant to win against.
    let specific = host.routes.iter().filter(|r| r.route.dst.prefix_len() > 0);
    let (connected, other): (Vec<&HostRoute>, Vec<&HostRoute>) =
        specific.partition(|r| r.is_connected());
    if let Some(r) = connected.iter().find(|r| overlaps(&subnet, &r.route.dst)) {
        return Err(conflict(format!(
            "overlaps the host's directly connected route {r}"
        )));
    }
    let via = |r: &&HostRoute| r.route.via.filter(|g| subnet.contains(g));
    if let Some((r, g)) = host.routes.iter().find_map(|r| via(&r).map(|g| (r, g))) {
        return Err(conflict(format!(
            "contains {g}, the gateway of the host's route {r}"
        )));
    }
    Ok(other
        .iter()
        .filter(|r| overlaps(&subnet, &r.route.dst))
        .map(|r| {
            format!(
                "{field} {subnet} overlaps the host's route {r}: trellis's more specific \
                 routes shadow it for the addresses trellis gives out"
            )
        })
        .collect())
}

/// Refuses a container namespace that is one of the `reserved` ones (the
/// host's, trellis's own, init's), however its path reached it.
pub(crate) fn check_netns_identity(
    path: &NetnsPath,
    id: NetnsId,
    reserved: &[ReservedNetns],
) -> Result<(), InvalidInput> {
    match reserved.iter().find(|r| r.id == id) {
        Some(r) => Err(InvalidInput::new(
            "netns",
            path,
            format!(
                "is {} ({id}); a container needs a network namespace of its own",
                r.what
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses a port published on one host address that is not the host's:
/// nothing would ever reach it there (DNAT happens only for addresses of the
/// host). `127.0.0.0/8` is the host's; `::1` is refused because the kernel
/// never routes it off the host, so it cannot lead to a container.
pub(crate) fn check_host_ips(
    ports: &[PortSpec],
    addresses: &[HostAddress],
) -> Result<(), InvalidInput> {
    for h in ports.iter().filter_map(|p| p.host_ip) {
        if h == IpAddr::from(std::net::Ipv6Addr::LOCALHOST) {
            let why = "the kernel never routes ::1 off the host, so it cannot lead to a container \
                       (publish on 127.0.0.1, or on an IPv6 address of the host)";
            return Err(InvalidInput::new("host_ip", h, why));
        }
        let local = h.is_loopback() || addresses.iter().any(|a| a.addr.addr() == h);
        if !local {
            let why = "not an address of the host: nothing would reach the port there";
            return Err(InvalidInput::new("host_ip", h, why));
        }
    }
    Ok(())
}

/// Refuses to publish a host port that a socket on the host owns: its
/// traffic would be taken from it (sshd's 22 would lock the admin out).
pub(crate) fn check_listeners(ports: &[PortSpec], listeners: &[Listener]) -> Result<(), Error> {
    for p in ports {
        // A socket on one address and a port on another do not meet; a
        // socket on every address (0.0.0.0, ::) meets every port.
        let meets = |l: &&Listener| {
            let ip = l.local.ip();
            p.host_ip.is_none_or(|h| ip.is_unspecified() || ip == h)
        };
        let owner = listeners
            .iter()
            .filter(meets)
            .find(|l| l.protocol == p.protocol && l.local.port() == p.host_port);
        if let Some(l) = owner {
            return Err(Error::PortListening {
                protocol: p.protocol,
                host_port: p.host_port,
                local: l.local,
            });
        }
    }
    Ok(())
}
