//! The container side of `Links`: a veth pair across namespaces, and the
//! interface, addresses and routes set up inside the container.

use crate::links::{index_of, kernel_error, resolve, write_sysctl};
use crate::machine::Machine;
use crate::state::{FakeLink, LinkKind, ns_of};
use trellis_link::{
    BRIDGE_MAX_PORTS, ContainerIface, ContainerRoute, LinkError, Ns, SysctlKey, VethInfo, VethSpec,
    container_mac,
};
use trellis_route::Route;
use trellis_types::IfName;

/// A veth pair as `NetlinkLinks::create_veth` makes it: the peer born in the
/// container (down, its MAC derived from the host end's name unless given),
/// the host end up, enslaved with hairpin on, IPv6 off unless kept; a taken
/// name on either side refused before anything is made.
pub(crate) fn create_veth(m: &mut Machine, spec: &VethSpec) -> Result<VethInfo, LinkError> {
    let c = resolve(m, &ns_of(&spec.container_netns))?;
    let master = match &spec.master {
        Some(r) => Some(index_of(m, "", r)?),
        None => None,
    };
    if m.host().by_name(spec.host_name.as_str()).is_some() {
        return Err(LinkError::AlreadyExists {
            name: spec.host_name.to_string(),
        });
    }
    if m.ns(&c).by_name(spec.container_name.as_str()).is_some() {
        return Err(LinkError::AlreadyExists {
            name: format!("{} in {}", spec.container_name, spec.container_netns),
        });
    }
    if let Some(b) = master {
        let ports = m.host().links.values().filter(|l| l.master == Some(b));
        if ports.count() >= BRIDGE_MAX_PORTS {
            let bridge = spec.master.as_ref().map(ToString::to_string);
            return Err(LinkError::BridgeFull {
                bridge: bridge.unwrap_or_default(),
            });
        }
    }
    let (h, p) = (m.fresh_index(), m.fresh_index());
    let host_mac = spec.host_mac.unwrap_or_else(|| m.fresh_mac());
    let peer_mac = spec
        .container_mac
        .unwrap_or_else(|| container_mac(&spec.host_name));
    let peer_ns = m.ns_at(&c);
    let host_kind = LinkKind::Veth {
        peer_ns,
        peer_index: p,
    };
    let mut host = FakeLink::new(h, spec.host_name.clone(), host_kind, host_mac);
    let peer_kind = LinkKind::Veth {
        peer_ns: Ns::Host,
        peer_index: h,
    };
    let mut peer = FakeLink::new(p, spec.container_name.clone(), peer_kind, peer_mac);
    if let Some(mtu) = spec.mtu {
        (host.mtu, peer.mtu) = (mtu, mtu);
    }
    host.master = master;
    host.hairpin = master.is_some();
    host.ipv6 = spec.host_ipv6;
    host.up = true;
    m.insert_link("", host);
    m.insert_link(&c, peer);
    if !spec.host_ipv6 {
        let key = SysctlKey::ipv6_conf(&spec.host_name, "disable_ipv6")?;
        write_sysctl(m, "", key.as_str(), "1")?;
    }
    Ok(VethInfo {
        host_ifindex: h,
        container_ifindex: p,
        container_mac: peer_mac,
    })
}

/// A container route as trellis-link installs it.
fn container_route(r: &ContainerRoute, dev: &IfName) -> Route {
    match r.via {
        Some(via) => Route::via(r.dst, via, Some(dev.clone())),
        None => Route::on_link(r.dst, dev.clone()),
    }
}

/// The container side in one go: `lo` up, the addresses, the interface up,
/// then the routes through it in order (each gateway must be reachable by
/// then, as in the kernel).
pub(crate) fn setup_container(
    m: &mut Machine,
    iface: &ContainerIface,
    routes: &[ContainerRoute],
) -> Result<(), LinkError> {
    let c = resolve(m, &ns_of(&iface.netns))?;
    let index = index_of(m, &c, &iface.link)?;
    if let Some(lo) = m.ns_mut(&c).by_name_mut("lo") {
        lo.set_up();
    }
    let link = m.ns_mut(&c).links.get_mut(&index).expect("resolved");
    link.ipv6 = link.ipv6 && iface.ipv6;
    for a in &iface.addresses {
        link.add_address(*a);
    }
    link.set_up();
    let dev = link.name.clone();
    for r in routes {
        let route = container_route(r, &dev);
        crate::routes::install(m, &c, &route).map_err(|errno| {
            LinkError::from(kernel_error("add route", route.to_string(), errno))
        })?;
    }
    Ok(())
}
