//! Read-only views of kernel state that the link and route traits do not
//! offer (a link's addresses, a host port's neighbours), for `check`.
//!
//! Kept behind a narrow trait like every other kernel-facing part so that
//! `check` is testable with a mock. The real implementation reuses
//! trellis-link's request executor and namespace sockets: one dump per call,
//! nothing cached. (These reads would sit naturally on `Links`/`Routes`; they
//! live here until those traits grow them.)

use crate::Error;
use async_trait::async_trait;
use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use std::net::IpAddr;
use trellis_link::nl::{DUMP, Request, fetch};
use trellis_link::{LinkError, LinkRef, LinkSummary, Mac, Ns, Sockets, msg};
use trellis_types::IfName;

/// Kernel state `check` reads besides links and trellis's routes.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Inspect: Send + Sync {
    /// The link `name` in `ns` with its addresses, or `None` if there is none.
    async fn link(
        &self,
        ns: &Ns,
        name: &IfName,
    ) -> Result<Option<(LinkSummary, Vec<IpNet>)>, Error>;
    /// The neighbour entries (address, MAC) on host link `dev`.
    async fn neighbours(&self, dev: &IfName) -> Result<Vec<(IpAddr, Mac)>, Error>;
}

/// [`Inspect`] over rtnetlink.
pub struct NetlinkInspect {
    sockets: Sockets,
}

impl NetlinkInspect {
    /// Reads through `sockets` (the host's, and per-call ones elsewhere).
    pub fn new(sockets: Sockets) -> Self {
        Self { sockets }
    }
}

const ENODEV: i32 = 19;

#[async_trait]
impl Inspect for NetlinkInspect {
    async fn link(
        &self,
        ns: &Ns,
        name: &IfName,
    ) -> Result<Option<(LinkSummary, Vec<IpNet>)>, Error> {
        let handle = self.sockets.handle(ns).await?;
        let found = match fetch(&handle, msg::get_link(&LinkRef::Name(name.clone()))).await {
            Ok(found) => found,
            Err(e) if e.source.raw_os_error() == Some(ENODEV) => return Ok(None),
            Err(e) => return Err(LinkError::Kernel(e).into()),
        };
        let Some(M::NewLink(link)) = found.first() else {
            return Ok(None);
        };
        let summary = msg::summarise(link);
        let dump = Request::new(
            "list addresses",
            name.as_str(),
            DUMP,
            M::GetAddress(AddressMessage::default()),
        );
        let answers = fetch(&handle, dump).await.map_err(LinkError::Kernel)?;
        let addresses = answers
            .iter()
            .filter_map(|m| match m {
                M::NewAddress(a) if a.header.index == summary.index => Some(a),
                _ => None,
            })
            .filter_map(|a| {
                let ip = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })?;
                IpNet::new(ip, a.header.prefix_len).ok()
            })
            .collect();
        Ok(Some((summary, addresses)))
    }

    async fn neighbours(&self, dev: &IfName) -> Result<Vec<(IpAddr, Mac)>, Error> {
        let handle = self.sockets.handle(&Ns::Host).await?;
        let Some((link, _)) = self.link(&Ns::Host, dev).await? else {
            return Ok(Vec::new());
        };
        let dump = Request::new(
            "list neighbours",
            dev.as_str(),
            DUMP,
            M::GetNeighbour(NeighbourMessage::default()),
        );
        let answers = fetch(&handle, dump).await.map_err(LinkError::Kernel)?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                M::NewNeighbour(n) if n.header.ifindex == link.index => neighbour(n),
                _ => None,
            })
            .collect())
    }
}

fn neighbour(n: &NeighbourMessage) -> Option<(IpAddr, Mac)> {
    let mut ip = None;
    let mut mac = None;
    for attr in &n.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = Mac::try_from(l.as_slice()).ok(),
            _ => {}
        }
    }
    Some((ip?, mac?))
}
