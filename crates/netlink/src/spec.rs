//! The values trellis-link and trellis-route both speak: where an operation
//! runs, which link, what a link looks like, which address families, and the
//! routes a container is given.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use trellis_types::{IfName, NetnsPath};

/// A MAC address (EUI-48).
pub type Mac = [u8; 6];

/// Formats a MAC as `02:aa:bb:cc:dd:ee`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Which network namespace an operation runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ns {
    /// The host namespace the [`crate::Sockets`] were opened for
    /// ([`crate::Sockets::current`] or [`crate::Sockets::in_netns`]).
    Host,
    /// Another namespace, usually a container's, opened for this call only.
    Path(NetnsPath),
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ns::Host => f.write_str("host netns"),
            Ns::Path(p) => write!(f, "netns {p}"),
        }
    }
}

/// An interface, by index or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkRef {
    /// By interface index (in the namespace the operation runs in).
    Index(u32),
    /// By name.
    Name(IfName),
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Index(i) => write!(f, "ifindex {i}"),
            LinkRef::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// One interface as a listing reports it ([`crate::lookup::summarise`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`"bridge"`, `"veth"`), `None` for physical devices and `lo`.
    pub kind: Option<String>,
    /// Hardware address, if it is an Ethernet-like one.
    pub mac: Option<Mac>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Index of the bridge it is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub link: Option<u32>,
    /// Its IPv4 settings, as every link dump reports them
    /// (`IFLA_AF_SPEC`/`AF_INET`); `None` when the kernel sent none.
    pub inet: Option<InetConf>,
}

/// The per-interface IPv4 settings trellis relies on, read back from a link
/// dump (the `net.ipv4.conf.<if>.*` sysctls, without a `/proc` read per
/// interface): what lets `observe` see a routed port's knobs or a bridge's
/// `route_localnet` switched off by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InetConf {
    /// `forwarding`.
    pub forwarding: bool,
    /// `proxy_arp`.
    pub proxy_arp: bool,
    /// `route_localnet`.
    pub route_localnet: bool,
}

/// Which address families an endpoint or network uses: what decides the
/// host-wide forwarding switches (trellis-link) and a routed port's knobs
/// and gateways (trellis-route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Families {
    /// IPv4.
    pub v4: bool,
    /// IPv6.
    pub v6: bool,
}

impl Families {
    /// IPv4 only.
    pub const V4: Families = Families {
        v4: true,
        v6: false,
    };
    /// IPv6 only.
    pub const V6: Families = Families {
        v4: false,
        v6: true,
    };
    /// Both.
    pub const DUAL: Families = Families { v4: true, v6: true };

    /// The families of `addrs`.
    pub fn of(addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        addrs.into_iter().fold(Self::default(), |f, a| Families {
            v4: f.v4 || a.is_ipv4(),
            v6: f.v6 || a.is_ipv6(),
        })
    }
}

/// A route inside a container, through the interface trellis-link configures
/// there (`Links::setup_container`); tagged [`crate::RTPROT_TRELLIS`].
///
/// Here rather than in trellis-link because trellis-route knows which routes
/// a routed-mode container needs (its link-local gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContainerRoute {
    /// Destination prefix, without host bits (`0.0.0.0/0` is the default route).
    pub dst: IpNet,
    /// Gateway; `None` makes a `scope link` route (the destination is on the link).
    pub via: Option<IpAddr>,
}

impl ContainerRoute {
    /// `<ip>/32` (`/128`) `scope link`: the gateway is on the link even though
    /// no address of the container covers it (routed mode's `169.254.1.1`).
    pub fn on_link(ip: IpAddr) -> Self {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        Self {
            dst: IpNet::new(ip, len).expect("host prefix length"),
            via: None,
        }
    }

    /// `default via <gw>`.
    pub fn default_via(gw: IpAddr) -> Self {
        let dst = match gw {
            IpAddr::V4(_) => IpNet::V4(Default::default()),
            IpAddr::V6(_) => IpNet::V6(Default::default()),
        };
        Self { dst, via: Some(gw) }
    }
}

impl fmt::Display for ContainerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        match self.via {
            Some(via) => write!(f, " via {via}"),
            None => f.write_str(" scope link"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_print_as_ip_shows_them_and_families_follow_addresses() {
        assert_eq!(format_mac(&[0xee; 6]), "ee:ee:ee:ee:ee:ee");
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 0x0a]), "02:00:00:00:00:0a");
        let ips: [IpAddr; 2] = ["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        assert_eq!(Families::of(ips), Families::DUAL);
        assert_eq!(Families::of([ips[0]]), Families::V4);
        assert_eq!(Families::of([]), Families::default());
    }

    #[test]
    fn container_routes_print_as_ip_route_would() {
        let gw: IpAddr = "169.254.1.1".parse().unwrap();
        assert_eq!(
            ContainerRoute::on_link(gw).to_string(),
            "169.254.1.1/32 scope link"
        );
        assert_eq!(
            ContainerRoute::default_via(gw).to_string(),
            "0.0.0.0/0 via 169.254.1.1"
        );
        let gw6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            ContainerRoute::default_via(gw6).to_string(),
            "::/0 via fe80::1"
        );
    }
}
