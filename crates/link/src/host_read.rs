//! Reading the host facts of [`crate::host`] from the kernel: one address
//! dump and one link dump on the host socket, and the `/proc` socket tables
//! read on a thread inside the host namespace.

use crate::error::LinkError;
use crate::host::{HostAddress, Listener, WantedPort, probe};
use crate::msg;
use crate::netns::Sockets;
use crate::nl::{DUMP, Request, fetch};
use crate::spec::Ns;
use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use std::collections::HashMap;

/// Every address of the host namespace, with the name of its interface.
pub(crate) async fn addresses(sockets: &Sockets) -> Result<Vec<HostAddress>, LinkError> {
    let host = sockets.host();
    let links = fetch(host, msg::dump_links()).await?;
    let names: HashMap<u32, String> = links
        .iter()
        .filter_map(|m| match m {
            M::NewLink(l) => Some((l.header.index, msg::summarise(l).name)),
            _ => None,
        })
        .collect();
    let dump = Request::new(
        "list addresses",
        "host",
        DUMP,
        M::GetAddress(AddressMessage::default()),
    );
    let answers = fetch(host, dump).await?;
    Ok(answers
        .iter()
        .filter_map(|m| match m {
            M::NewAddress(a) => host_address(a, &names),
            _ => None,
        })
        .collect())
}

/// The local address of an address message: `IFA_LOCAL` where there is one
/// (on a point-to-point link `IFA_ADDRESS` is the peer's), else `IFA_ADDRESS`.
fn host_address(a: &AddressMessage, names: &HashMap<u32, String>) -> Option<HostAddress> {
    let mut local = None;
    let mut address = None;
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let addr = IpNet::new(local.or(address)?, a.header.prefix_len).ok()?;
    let dev = names
        .get(&a.header.index)
        .cloned()
        .unwrap_or_else(|| format!("ifindex {}", a.header.index));
    Some(HostAddress { dev, addr })
}

/// The host sockets that hold any of `wanted` ([`crate::host::probe`], run
/// in the host namespace).
pub(crate) async fn listeners(
    sockets: &Sockets,
    wanted: &[WantedPort],
) -> Result<Vec<Listener>, LinkError> {
    let wanted = wanted.to_vec();
    sockets
        .run_here_or_in(&Ns::Host, move || {
            let mut out = Vec::new();
            for w in wanted {
                out.extend(probe(w)?);
            }
            Ok(out)
        })
        .await
        .map_err(|e| e.into_link_error("look for sockets on host ports in", &Ns::Host))
}
