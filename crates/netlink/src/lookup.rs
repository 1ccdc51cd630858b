//! Finding links: the get-link and dump-links requests, reading a link
//! message back as a [`LinkSummary`], and the two reads built on them.
//!
//! Both siblings need it: trellis-link to find and reconcile its bridges and
//! veths, trellis-route to resolve a route's or neighbour's `dev` to the
//! index the kernel wants, in the namespace the request goes to.

use crate::error::KernelError;
use crate::nl::{self, DUMP, GET, Request};
use crate::spec::{InetConf, LinkRef, LinkSummary, Mac};
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use nix::errno::Errno;

/// A link message that names `link` (by index or `IFLA_IFNAME`) and nothing
/// else: the start of every request about one link.
pub fn link_message(link: &LinkRef) -> LinkMessage {
    let mut msg = LinkMessage::default();
    match link {
        LinkRef::Index(i) => msg.header.index = *i,
        LinkRef::Name(n) => msg
            .attributes
            .push(LinkAttribute::IfName(n.as_str().to_owned())),
    }
    msg
}

/// Gets one link.
pub fn get_link(link: &LinkRef) -> Request {
    Request::new(
        "get link",
        link.to_string(),
        GET,
        M::GetLink(link_message(link)),
    )
}

/// Dumps all links.
pub fn dump_links() -> Request {
    Request::new("list links", "", DUMP, M::GetLink(LinkMessage::default()))
}

/// Reads the parts of a link message trellis cares about.
pub fn summarise(msg: &LinkMessage) -> LinkSummary {
    let mut s = LinkSummary {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        mac: None,
        mtu: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        link: None,
        inet: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => s.name = n.clone(),
            LinkAttribute::Address(a) => s.mac = <Mac>::try_from(a.as_slice()).ok(),
            LinkAttribute::Mtu(m) => s.mtu = Some(*m),
            LinkAttribute::Controller(m) => s.master = Some(*m),
            LinkAttribute::Link(l) => s.link = Some(*l),
            LinkAttribute::AfSpecUnspec(specs) => s.inet = inet_conf(specs).or(s.inet),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        s.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// The IPv4 settings in a link's `IFLA_AF_SPEC`.
fn inet_conf(specs: &[AfSpecUnspec]) -> Option<InetConf> {
    specs.iter().find_map(|s| match s {
        AfSpecUnspec::Inet(inet) => inet.iter().find_map(|i| match i {
            AfSpecInet::DevConf(c) => Some(InetConf {
                forwarding: c.forwarding != 0,
                proxy_arp: c.proxy_arp != 0,
                route_localnet: c.route_localnet != 0,
            }),
            _ => None,
        }),
        _ => None,
    })
}

/// Gets one link in the namespace of `handle`; `None` if it does not exist
/// (the kernel's `ENODEV`).
pub async fn find_link(
    handle: &rtnetlink::Handle,
    link: &LinkRef,
) -> Result<Option<LinkSummary>, KernelError> {
    match nl::fetch(handle, get_link(link)).await {
        Ok(msgs) => Ok(msgs.iter().find_map(|m| match m {
            M::NewLink(l) => Some(summarise(l)),
            _ => None,
        })),
        Err(e) if e.is(Errno::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every link in the namespace of `handle`, in one dump.
pub async fn list_links(handle: &rtnetlink::Handle) -> Result<Vec<LinkSummary>, KernelError> {
    let msgs = nl::fetch(handle, dump_links()).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            M::NewLink(l) => Some(summarise(l)),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_types::IfName;

    #[test]
    fn a_link_is_asked_for_by_name_or_index_and_read_back() {
        let name = LinkRef::Name(IfName::parse("ifname", "br0").unwrap());
        let req = get_link(&name);
        assert_eq!((req.op, req.flags), ("get link", GET));
        let M::GetLink(msg) = req.message else {
            panic!("{req:?}")
        };
        assert_eq!(
            (msg.header.index, msg.attributes),
            (0, vec![LinkAttribute::IfName("br0".into())])
        );
        let M::GetLink(msg) = get_link(&LinkRef::Index(7)).message else {
            panic!()
        };
        assert_eq!((msg.header.index, msg.attributes.len()), (7, 0));
        assert_eq!(dump_links().flags, DUMP);

        let mut msg = link_message(&LinkRef::Index(7));
        msg.header.flags |= LinkFlags::Up;
        msg.attributes.extend([
            LinkAttribute::IfName("tr0123456789abc".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Controller(3),
            LinkAttribute::Link(2),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                netlink_packet_route::link::InfoKind::Veth,
            )]),
        ]);
        let mut conf = netlink_packet_route::link::InetDevConf::default();
        (conf.forwarding, conf.proxy_arp) = (1, 1);
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                AfSpecInet::DevConf(conf),
            ])]));
        assert_eq!(
            summarise(&msg),
            LinkSummary {
                index: 7,
                name: "tr0123456789abc".into(),
                kind: Some("veth".into()),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: Some(1500),
                up: true,
                master: Some(3),
                link: Some(2),
                inet: Some(InetConf {
                    forwarding: true,
                    proxy_arp: true,
                    route_localnet: false,
                }),
            }
        );
    }
}
