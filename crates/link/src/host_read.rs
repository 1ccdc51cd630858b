//! Reading the host facts of [`crate::host`] from the kernel: one link dump
//! and one address dump on the host socket, and the bind probes of host
//! ports run inside the host namespace.

use crate::error::LinkError;
use crate::host::{HostAddress, Listener, WantedPort, probe};
use crate::msg;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_packet_route::address::AddressMessage;
use std::collections::HashMap;
use trellis_netlink::nl::fetch;
use trellis_netlink::{Ns, Sockets, lookup};

/// Every address of the host namespace, with the name of its interface.
pub(crate) async fn addresses(sockets: &Sockets) -> Result<Vec<HostAddress>, LinkError> {
    let host = sockets.host();
    let names: HashMap<u32, String> = lookup::list_links(host)
        .await?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let answers = fetch(host, msg::dump_addresses("host")).await?;
    Ok(answers
        .iter()
        .filter_map(|m| match m {
            M::NewAddress(a) => host_address(a, &names),
            _ => None,
        })
        .collect())
}

/// An address message as a [`HostAddress`], named by its interface.
fn host_address(a: &AddressMessage, names: &HashMap<u32, String>) -> Option<HostAddress> {
    let addr = msg::local_address(a)?;
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
    let probe_all = move || {
        let mut out = Vec::new();
        for w in wanted {
            out.extend(probe(w)?);
        }
        Ok(out)
    };
    Ok(sockets
        .run_here_or_in(&Ns::Host, "look for sockets on host ports in", probe_all)
        .await?)
}
