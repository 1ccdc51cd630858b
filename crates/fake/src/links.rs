//! `Links` on the fake: bridges, veth pairs across namespaces, addresses,
//! sysctls, following `NetlinkLinks`' documented behaviour.

use crate::kernel::FakeKernel;
use crate::machine::Machine;
use crate::state::{FakeLink, LinkKind};
use crate::veth;
use async_trait::async_trait;
use ipnet::IpNet;
use nix::errno::Errno;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use trellis_link::{
    BridgeSpec, ContainerIface, ContainerRoute, Families, HostAddress, KernelError, LinkDetail,
    LinkError, LinkRef, LinkSummary, Links, Listener, NetnsId, Ns, ReservedNetns, RetireEnd,
    SysctlKey, VethInfo, VethSpec, WantedPort, bridge_mac, retired_name,
};
use trellis_route::{ROUTED_GATEWAY_V4, ROUTED_GATEWAY_V6, RoutedHostPort};
use trellis_types::{IfName, NetnsPath};

/// An injected failure, as the kernel's refusal of the call.
pub(crate) fn kernel_error(op: &'static str, subject: String, errno: Errno) -> KernelError {
    KernelError {
        op,
        subject,
        source: std::io::Error::from_raw_os_error(errno as i32),
    }
}

fn fault(op: &'static str, subject: String, errno: Errno) -> LinkError {
    kernel_error(op, subject, errno).into()
}

fn not_found(link: &LinkRef) -> LinkError {
    LinkError::NotFound {
        name: link.to_string(),
    }
}

/// The index of `link` in namespace `k`.
pub(crate) fn index_of(m: &Machine, k: &str, link: &LinkRef) -> Result<u32, LinkError> {
    let ns = m.ns(k);
    let found = match link {
        LinkRef::Index(i) => ns.links.get(i),
        LinkRef::Name(n) => ns.by_name(n.as_str()),
    };
    found.map(|l| l.index).ok_or_else(|| not_found(link))
}

pub(crate) fn resolve(m: &Machine, ns: &Ns) -> Result<String, LinkError> {
    Ok(m.resolve(ns)?)
}

/// Writes a sysctl; a per-interface key of a missing interface does not
/// exist, as in `/proc/sys`.
pub(crate) fn write_sysctl(
    m: &mut Machine,
    k: &str,
    key: &str,
    value: &str,
) -> Result<(), LinkError> {
    let parts: Vec<&str> = key.split('/').collect();
    let per_if = parts.len() > 3
        && matches!(parts[1], "conf" | "neigh")
        && !matches!(parts[2], "all" | "default");
    if per_if && m.ns(k).by_name(parts[2]).is_none() {
        return Err(LinkError::Io {
            op: "write sysctl",
            subject: key.to_owned(),
            source: std::io::Error::from_raw_os_error(Errno::ENOENT as i32),
        });
    }
    m.ns_mut(k).sysctls.insert(key.to_owned(), value.to_owned());
    Ok(())
}

fn ensure_bridge(m: &mut Machine, spec: &BridgeSpec) -> Result<u32, LinkError> {
    let mac = spec.mac.unwrap_or_else(|| bridge_mac(&spec.name));
    let index = match m.host().by_name(spec.name.as_str()) {
        Some(l) if l.kind != LinkKind::Bridge => {
            let kind = match &l.kind {
                LinkKind::Veth { .. } => "a veth".to_owned(),
                _ => "a device without a kind".to_owned(),
            };
            return Err(LinkError::NotABridge {
                name: spec.name.to_string(),
                kind,
            });
        }
        Some(l) => l.index,
        None => {
            let index = m.fresh_index();
            let link = FakeLink::new(index, spec.name.clone(), LinkKind::Bridge, mac);
            m.insert_link("", link);
            index
        }
    };
    let bridge = m.host_mut().links.get_mut(&index).expect("just found");
    bridge.mac = mac;
    if let Some(mtu) = spec.mtu {
        bridge.mtu = mtu;
    }
    bridge.set_up();
    for a in &spec.gateway {
        bridge.add_address(*a);
    }
    let key = SysctlKey::ipv4_conf(&spec.name, "route_localnet")?;
    write_sysctl(m, "", key.as_str(), "1")?;
    Ok(index)
}

pub(crate) fn setup_routed_host_port_on(
    m: &mut Machine,
    port: &RoutedHostPort,
) -> Result<(), LinkError> {
    let link = LinkRef::Index(port.index);
    index_of(m, "", &link)?;
    let name = &port.name;
    let mut writes = Vec::new();
    let mut addresses = Vec::new();
    if port.families.v4 {
        for knob in ["forwarding", "proxy_arp"] {
            writes.push(SysctlKey::ipv4_conf(name, knob)?.as_str().to_owned());
        }
        writes.push(format!("ipv4/neigh/{name}/proxy_delay"));
        addresses.push(IpNet::new(IpAddr::V4(ROUTED_GATEWAY_V4), 32).expect("/32"));
    }
    if port.families.v6 {
        writes.push(
            SysctlKey::ipv6_conf(name, "forwarding")?
                .as_str()
                .to_owned(),
        );
        addresses.push(IpNet::new(IpAddr::V6(ROUTED_GATEWAY_V6), 64).expect("/64"));
    }
    for key in &writes {
        let value = if key.ends_with("proxy_delay") {
            "0"
        } else {
            "1"
        };
        write_sysctl(m, "", key, value)?;
    }
    if port.families.v6 {
        write_sysctl(m, "", &format!("ipv6/conf/{name}/accept_ra"), "0")?;
    }
    let l = m.host_mut().links.get_mut(&port.index).expect("resolved");
    if port.families.v6 {
        l.ipv6 = false; // addr_gen_mode=none: only the gateway address
    }
    for a in addresses {
        l.add_address(a);
    }
    Ok(())
}

/// What a bind probe for `want` would meet, reported as the real one does
/// (the address the failing bind asked for).
fn probe(listeners: &[Listener], want: &WantedPort) -> Option<Listener> {
    let on_port = |l: &&Listener| l.protocol == want.protocol && l.local.port() == want.port;
    let held = |ip: IpAddr| {
        listeners.iter().filter(on_port).any(|l| {
            let other = l.local.ip();
            other == ip
                || other.is_unspecified() && other.is_ipv4() == ip.is_ipv4()
                || ip.is_unspecified() && other.is_ipv4() == ip.is_ipv4()
                // A dual-stack `[::]` socket also holds the IPv4 port.
                || ip.is_ipv4() && other == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        })
    };
    let asked: Vec<IpAddr> = match want.host_ip {
        Some(ip) => vec![ip],
        None => vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
    };
    asked.into_iter().find(|ip| held(*ip)).map(|ip| Listener {
        protocol: want.protocol,
        local: SocketAddr::new(ip, want.port),
    })
}

fn ns_subject(ns: &Ns, link: &impl std::fmt::Display) -> String {
    format!("{link} in {ns}")
}

#[async_trait]
impl Links for FakeKernel {
    async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<u32, LinkError> {
        let s = spec.name.to_string();
        self.call("ensure_bridge", s, fault, |m| ensure_bridge(m, spec))
    }

    fn check_netns(&self, netns: &NetnsPath) -> Result<NetnsId, LinkError> {
        self.call("check_netns", netns.to_string(), fault, |m| {
            Ok(m.id_of(netns)?)
        })
    }

    fn reserved_netns(&self) -> Vec<ReservedNetns> {
        let ok: Result<_, LinkError> = self.call("reserved_netns", String::new(), fault, |m| {
            Ok(vec![ReservedNetns {
                id: m.host().id,
                what: "the host network namespace that trellis plumbs",
            }])
        });
        ok.unwrap_or_default()
    }

    async fn host_addresses(&self) -> Result<Vec<HostAddress>, LinkError> {
        self.call("host_addresses", String::new(), fault, |m| {
            let links = m.host().links.values();
            Ok(links
                .flat_map(|l| {
                    l.addresses.iter().map(|a| HostAddress {
                        dev: l.name.to_string(),
                        addr: *a,
                    })
                })
                .collect())
        })
    }

    async fn host_listeners(&self, wanted: &[WantedPort]) -> Result<Vec<Listener>, LinkError> {
        let s = format!("{} ports", wanted.len());
        self.call("host_listeners", s, fault, |m| {
            Ok(wanted
                .iter()
                .filter_map(|w| probe(&m.listeners, w))
                .collect())
        })
    }

    async fn create_veth(&self, spec: &VethSpec) -> Result<VethInfo, LinkError> {
        let s = format!(
            "{} (peer {} in {})",
            spec.host_name, spec.container_name, spec.container_netns
        );
        self.call("create_veth", s, fault, |m| veth::create_veth(m, spec))
    }

    async fn setup_container_iface(&self, iface: &ContainerIface) -> Result<(), LinkError> {
        let s = format!("{} in {}", iface.link, iface.netns);
        self.call("setup_container_iface", s, fault, |m| {
            veth::setup_container(m, iface, &[])
        })
    }

    async fn setup_container(
        &self,
        iface: &ContainerIface,
        routes: &[ContainerRoute],
    ) -> Result<(), LinkError> {
        let s = format!("{} in {}", iface.link, iface.netns);
        self.call("setup_container", s, fault, |m| {
            veth::setup_container(m, iface, routes)
        })
    }

    async fn link_detail(&self, ns: &Ns, name: &IfName) -> Result<Option<LinkDetail>, LinkError> {
        let s = format!("{name} in {ns}");
        self.call("link_detail", s, fault, |m| {
            let k = m.resolve(ns)?;
            let ns = m.ns(&k);
            Ok(ns.by_name(name.as_str()).map(|l| LinkDetail {
                link: ns.summary(l),
                addresses: l.addresses.clone(),
            }))
        })
    }

    async fn enable_host_forwarding(
        &self,
        families: Families,
        _own_bridges: &[IfName],
    ) -> Result<(), LinkError> {
        let s = format!("{families:?}");
        self.call("enable_host_forwarding", s, fault, |m| {
            if families.v4 {
                write_sysctl(m, "", "ipv4/ip_forward", "1")?;
            }
            if families.v6 {
                write_sysctl(m, "", "ipv6/conf/all/forwarding", "1")?;
            }
            Ok(())
        })
    }

    async fn add_address(&self, ns: &Ns, link: &LinkRef, addr: IpNet) -> Result<(), LinkError> {
        let s = format!("{addr} on {}", ns_subject(ns, link));
        self.call("add_address", s, fault, |m| {
            let k = resolve(m, ns)?;
            let i = index_of(m, &k, link)?;
            m.ns_mut(&k)
                .links
                .get_mut(&i)
                .expect("resolved")
                .add_address(addr);
            Ok(())
        })
    }

    async fn set_up(&self, ns: &Ns, link: &LinkRef) -> Result<(), LinkError> {
        self.call("set_up", ns_subject(ns, link), fault, |m| {
            let k = resolve(m, ns)?;
            let i = index_of(m, &k, link)?;
            m.ns_mut(&k).links.get_mut(&i).expect("resolved").set_up();
            Ok(())
        })
    }

    async fn retire_veth(
        &self,
        host: &IfName,
        container: Option<RetireEnd>,
    ) -> Result<Option<IfName>, LinkError> {
        self.call("retire_veth", host.to_string(), fault, |m| {
            let Some(link) = m.host().by_name(host.as_str()).cloned() else {
                return Ok(None);
            };
            if let (Some(end), LinkKind::Veth { peer_index, .. }) = (&container, &link.kind)
                && let Ok(k) = m.resolve(&Ns::Path(end.netns.clone()))
                && m.ns(&k)
                    .links
                    .get(peer_index)
                    .is_some_and(|p| p.name == end.ifname)
            {
                m.retire_link(&k, *peer_index, &retired_name(), true);
            }
            let to = retired_name();
            m.retire_link("", link.index, &to, false);
            Ok(Some(to))
        })
    }

    async fn delete_link(&self, name: &IfName) -> Result<(), LinkError> {
        self.call("delete_link", name.to_string(), fault, |m| {
            if let Some(i) = m.host().by_name(name.as_str()).map(|l| l.index) {
                m.delete_link("", i);
            }
            Ok(())
        })
    }

    async fn delete_links(&self, names: &[IfName]) -> Result<(), LinkError> {
        let s = names.iter().map(ToString::to_string).collect::<Vec<_>>();
        self.call("delete_links", s.join(", "), fault, |m| {
            for name in names {
                if let Some(i) = m.host().by_name(name.as_str()).map(|l| l.index) {
                    m.delete_link("", i);
                }
            }
            Ok(())
        })
    }

    async fn link_exists(&self, ns: &Ns, name: &IfName) -> Result<bool, LinkError> {
        self.call("link_exists", ns_subject(ns, name), fault, |m| {
            let k = resolve(m, ns)?;
            Ok(m.ns(&k).by_name(name.as_str()).is_some())
        })
    }

    async fn list_links_with_prefix(
        &self,
        ns: &Ns,
        prefix: &str,
    ) -> Result<Vec<LinkSummary>, LinkError> {
        let s = ns_subject(ns, &format!("{prefix}*"));
        self.call("list_links_with_prefix", s, fault, |m| {
            let k = resolve(m, ns)?;
            let ns = m.ns(&k);
            Ok(ns
                .links
                .values()
                .filter(|l| l.name.as_str().starts_with(prefix))
                .map(|l| ns.summary(l))
                .collect())
        })
    }

    async fn set_sysctl(&self, ns: &Ns, key: &SysctlKey, value: &str) -> Result<(), LinkError> {
        let s = format!("{}={value} in {ns}", key.as_str());
        self.call("set_sysctl", s, fault, |m| {
            let k = resolve(m, ns)?;
            write_sysctl(m, &k, key.as_str(), value)
        })
    }
}
