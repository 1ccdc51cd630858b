//! The kernel's rtnetlink replies as trellis reads them: one received
//! datagram through netlink-proto's codec (what rtnetlink's connection runs
//! on every receive) into `RouteNetlinkMessage`s (netlink-packet-route), and
//! each message through trellis's readers — links
//! (`trellis_netlink::lookup::summarise`), addresses
//! (`trellis_link::msg::local_address`), routes (`trellis_route::msg::
//! parse_route`, `parse_main_route`, `trellis_route::peer::parse_peer_route`)
//! and neighbours (`trellis_route::msg::parse_neighbour`) — with an error
//! answer reported as `trellis_netlink::nl` reports it (`nl::refusal` in a
//! `KernelError`).
//!
//! Input: the datagram's bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage as M;
use netlink_proto::{NetlinkCodec, NetlinkMessageCodec};
use std::collections::HashMap;
use trellis_netlink::{KernelError, lookup, nl};
use trellis_types::IfName;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // Link names by index, as the readers of routes and neighbours get them
    // from a link dump (here: the links of the same datagram).
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut messages = Vec::new();
    while let Ok(Some(msg)) = NetlinkCodec::decode::<M>(&mut buf) {
        messages.push(msg);
    }
    for msg in &messages {
        if let NetlinkPayload::InnerMessage(M::NewLink(l)) = &msg.payload {
            let s = lookup::summarise(l);
            names.insert(s.index, s.name);
        }
    }
    let dev = IfName::parse("dev", "eth0").expect("a valid name");
    for msg in messages {
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => match m {
                M::NewAddress(a) => {
                    let _ = trellis_link::msg::local_address(&a);
                }
                M::NewRoute(r) => {
                    let _ = trellis_route::msg::parse_route(&r, &names);
                    let _ = trellis_route::msg::parse_main_route(&r, &names);
                    let _ = trellis_route::peer::parse_peer_route(&r);
                }
                M::NewNeighbour(n) => {
                    let dev = names
                        .get(&n.header.ifindex)
                        .and_then(|d| IfName::parse("dev", d).ok())
                        .unwrap_or_else(|| dev.clone());
                    let _ = trellis_route::msg::parse_neighbour(&n, &dev);
                }
                _ => {}
            },
            NetlinkPayload::Error(e) if e.code.is_some() => {
                let e = KernelError {
                    op: "fuzz",
                    subject: String::new(),
                    source: nl::refusal(&e),
                };
                let _ = (e.to_string(), e.errno());
            }
            _ => {}
        }
    }
});
