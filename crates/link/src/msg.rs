//! Pure builders: what trellis-link asks the kernel for, as [`Request`]
//! values (the shared ones, an address and a tagged route's shape, are
//! [`trellis_netlink::msg`]'s).

use crate::naming;
use crate::spec::{BridgeSpec, VethSpec};
use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InetDevConf, InfoBridgePort, InfoData,
    InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::route::{RouteScope, RouteType};
use nix::errno::Errno;
use std::os::fd::RawFd;
use trellis_netlink::lookup::link_message;
use trellis_netlink::msg::route_message;
use trellis_netlink::nl::{CHANGE, CREATE_EXCL, CREATE_REPLACE, DUMP, Request};
use trellis_netlink::{ContainerRoute, LinkRef, LinkSummary, Mac};

/// Errnos that mean a link is already gone.
pub const GONE: &[Errno] = &[Errno::ENODEV];

fn up(mut msg: LinkMessage) -> LinkMessage {
    msg.header.flags |= LinkFlags::Up;
    msg.header.change_mask |= LinkFlags::Up;
    msg
}

fn with_kind(mut msg: LinkMessage, kind: InfoKind, data: Option<InfoData>) -> LinkMessage {
    let mut info = vec![LinkInfo::Kind(kind)];
    info.extend(data.map(LinkInfo::Data));
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    msg
}

fn named(name: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    msg
}

fn indexed(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

/// Creates a bridge, up, with its MAC fixed (given or derived from the name).
pub fn bridge_create(spec: &BridgeSpec) -> Request {
    let mut msg = named(spec.name.as_str());
    let mac = spec.mac.unwrap_or_else(|| naming::bridge_mac(&spec.name));
    msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    let msg = up(with_kind(msg, InfoKind::Bridge, None));
    Request::new(
        "create bridge",
        spec.name.as_str(),
        CREATE_EXCL,
        M::NewLink(msg),
    )
}

/// `route_localnet=1` on a bridge (IPv4, one `RTM_SETLINK`): a host process
/// reaching a port published on `127.0.0.1` is DNAT'ed in output and leaves
/// through the bridge with its loopback source, which the kernel drops as a
/// martian on interfaces without it. What this opens to neighbours on the
/// bridge (sending to `127.0.0.1`) trellis-nat's input chain closes again.
pub fn bridge_conf(index: u32, subject: &str) -> Request {
    let mut conf = InetDevConf::default();
    conf.route_localnet = 1;
    let mut msg = indexed(index);
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConfRequest(conf),
        ])]));
    Request::new("set route_localnet on", subject, CHANGE, M::SetLink(msg))
}

/// Brings an existing bridge in line with `spec`: only what differs is sent;
/// `None` when nothing does (so a second `ensure_bridge` changes nothing).
pub fn bridge_update(existing: &LinkSummary, spec: &BridgeSpec) -> Option<Request> {
    let mut msg = indexed(existing.index);
    let mac = spec.mac.unwrap_or_else(|| naming::bridge_mac(&spec.name));
    if existing.mac != Some(mac) {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(mtu) = spec.mtu.filter(|m| existing.mtu != Some(*m)) {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if !existing.up {
        msg = up(msg);
    }
    if msg.attributes.is_empty() && msg.header.change_mask.is_empty() {
        return None;
    }
    Some(Request::new(
        "update bridge",
        spec.name.as_str(),
        CHANGE,
        M::SetLink(msg),
    ))
}

/// Creates a veth pair in one request: the host end named, up, enslaved to
/// `master`; the peer created inside the namespace `netns_fd` refers to, under
/// its final name, with its MAC and MTU.
///
/// The peer stays down: `veth_newlink` applies the peer's `ifinfomsg` flags
/// before the two ends are linked, so `IFF_UP` there fails in `veth_open`
/// with `ENOTCONN`. The container side is brought up in its own namespace.
pub fn veth_create(
    spec: &VethSpec,
    netns_fd: RawFd,
    master: Option<u32>,
    peer_mac: Mac,
) -> Request {
    let mut peer = named(spec.container_name.as_str());
    peer.attributes.push(LinkAttribute::NetNsFd(netns_fd));
    peer.attributes
        .push(LinkAttribute::Address(peer_mac.to_vec()));
    if let Some(mtu) = spec.mtu {
        peer.attributes.push(LinkAttribute::Mtu(mtu));
    }
    let mut host = named(spec.host_name.as_str());
    if let Some(mac) = spec.host_mac {
        host.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(mtu) = spec.mtu {
        host.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(master) = master {
        host.attributes.push(LinkAttribute::Controller(master));
    }
    let data = InfoData::Veth(InfoVeth::Peer(peer));
    let mut host = with_kind(host, InfoKind::Veth, Some(data));
    if spec.host_ipv6 {
        // Else it comes up after `disable_ipv6` is set (see `VethSpec`).
        host = up(host);
    }
    let subject = format!(
        "{} (peer {} in {})",
        spec.host_name, spec.container_name, spec.container_netns
    );
    Request::new("create veth", subject, CREATE_EXCL, M::NewLink(host))
}

/// Puts a bridge port in hairpin mode, so that a frame may leave through the
/// port it arrived on.
///
/// Needed because of br_netfilter: where it is active (built in and on by
/// default in every namespace on many kernels), a container's packet to a
/// published port of the host is DNAT'ed at the bridge layer, and when the
/// target is the sending container itself the frame must go back out of its
/// own port. Docker sets the same mode for the same reason. Bridge port
/// options are applied by `RTM_NEWLINK` on an existing link (slave changelink),
/// not by `RTM_SETLINK`.
pub fn port_hairpin(name: &str) -> Request {
    let mut msg = named(name);
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            true,
        )])),
    ]));
    Request::new("set hairpin mode on", name, CHANGE, M::NewLink(msg))
}

/// `addr_gen_mode=none` on link `index`: no IPv6 link-local address is
/// generated for it (so no DAD, router solicitation or MLD report).
pub fn no_link_local(index: u32, subject: &str) -> Request {
    let mut msg = indexed(index);
    let spec = AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)]);
    msg.attributes.push(LinkAttribute::AfSpecUnspec(vec![spec]));
    Request::new(
        "set addr_gen_mode none on",
        subject,
        CHANGE,
        M::SetLink(msg),
    )
}

/// Sets a link administratively up.
pub fn set_up(link: &LinkRef) -> Request {
    Request::new(
        "set up",
        link.to_string(),
        CHANGE,
        M::SetLink(up(link_message(link))),
    )
}

/// Deletes a link by name; a link that is already gone counts as deleted.
pub fn delete(name: &str) -> Request {
    Request::new("delete link", name, CHANGE, M::DelLink(named(name))).done_if(GONE)
}

/// Sets link `index` down (its routes and neighbours go with it).
pub fn down(index: u32, subject: &str) -> Request {
    let mut msg = indexed(index);
    msg.header.change_mask |= LinkFlags::Up;
    Request::new("set down", subject, CHANGE, M::SetLink(msg)).done_if(GONE)
}

/// Takes link `index` off its bridge (a link on none is left as it is).
///
/// Sent on its own, before [`down`]: the kernel applies a request's flags
/// before its master, and each change of a bridge port's state walks the
/// bridge's ports and forwarding database — taken off first, the port is
/// walked once, not twice.
pub fn off_bridge(index: u32, subject: &str) -> Request {
    let mut msg = indexed(index);
    msg.attributes.push(LinkAttribute::Controller(0));
    Request::new("take off its bridge", subject, CHANGE, M::SetLink(msg)).done_if(GONE)
}

/// Renames link `index` (it must be down: the kernel refuses to rename a
/// link that is up).
pub fn rename(index: u32, subject: &str, to: &str) -> Request {
    let mut msg = indexed(index);
    msg.attributes.push(LinkAttribute::IfName(to.to_owned()));
    Request::new(
        "rename",
        format!("{subject} to {to}"),
        CHANGE,
        M::SetLink(msg),
    )
}

/// Puts a link into device group `group` (the first half of a batched delete).
pub fn set_group(name: &str, group: u32) -> Request {
    let mut msg = named(name);
    msg.attributes.push(LinkAttribute::Group(group));
    Request::new("set group of", name, CHANGE, M::SetLink(msg)).done_if(GONE)
}

/// Deletes every link in device group `group` in one `unregister_netdevice_many`,
/// which pays the RCU grace periods of a teardown once for the whole batch.
pub fn delete_group(group: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    Request::new(
        "delete link group",
        group.to_string(),
        CHANGE,
        M::DelLink(msg),
    )
    .done_if(GONE)
}

/// A container route on interface `oif` (create or replace), tagged
/// [`trellis_netlink::RTPROT_TRELLIS`]: `scope link` without a gateway,
/// `global` with one.
pub fn container_route_add(route: &ContainerRoute, oif: u32) -> Request {
    let scope = match route.via {
        None => RouteScope::Link,
        Some(_) => RouteScope::Universe,
    };
    let msg = route_message(route.dst, route.via, Some(oif), scope, RouteType::Unicast);
    Request::new(
        "add route",
        route.to_string(),
        CREATE_REPLACE,
        M::NewRoute(msg),
    )
}

/// Dumps the addresses of every link (the kernel filters a dump by link only
/// under strict checking, so the caller picks its link's out). `subject`
/// names what the caller is after, for errors.
pub fn dump_addresses(subject: &str) -> Request {
    Request::new(
        "list addresses",
        subject,
        DUMP,
        M::GetAddress(AddressMessage::default()),
    )
}

/// The local address of an address message, with its prefix length:
/// `IFA_LOCAL` where there is one (on a point-to-point link `IFA_ADDRESS` is
/// the peer's), else `IFA_ADDRESS` (IPv6 gives only that).
pub fn local_address(a: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(local.or(address)?, a.header.prefix_len).ok()
}
