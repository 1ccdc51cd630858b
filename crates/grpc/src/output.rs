//! Replies out: core records as proto messages, addresses as text.

use std::collections::HashMap;
use trellis_agent::{Endpoint, Event, HeldBlock, Network, NetworkMode, Status};
use trellis_proto::v1 as pb;
use trellis_types::{Handle, PortMapping, Protocol};

fn texts<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// A network with its endpoint count.
pub fn network(n: Network, endpoints: usize) -> pb::Network {
    let s = n.spec;
    let (mode, bridge) = match s.mode {
        NetworkMode::Bridge { bridge } => (pb::NetworkMode::Bridge, bridge.as_str().to_owned()),
        NetworkMode::Routed => (pb::NetworkMode::Routed, String::new()),
    };
    pb::Network {
        spec: Some(pb::NetworkSpec {
            name: s.name.into(),
            mode: mode.into(),
            subnets: texts(&s.subnets),
            gateway: s.gateway.map(|g| g.to_string()).unwrap_or_default(),
            bridge,
            outgoing_nat: s.masquerade,
            mtu: s.mtu.unwrap_or(0),
            internal: s.internal,
            routable: s.routable,
            reach: s.reach.into_iter().map(String::from).collect(),
            subnet_pool: s.subnet_pool.map(String::from).unwrap_or_default(),
            cluster_pools: s.cluster_pools.into_iter().map(|c| c.name.into()).collect(),
        }),
        gateways: texts(&n.gateways),
        endpoints: u32::try_from(endpoints).unwrap_or(u32::MAX),
        warnings: n.warnings,
    }
}

/// A block of a cluster pool the node holds.
pub fn held_block(b: HeldBlock) -> pb::HeldBlock {
    pb::HeldBlock {
        network: b.network.into(),
        pool: b.pool.into(),
        prefix: b.prefix.to_string(),
        used: b.used,
        free: b.free,
        frozen: b.frozen,
    }
}

fn port(p: &PortMapping) -> pb::PortMapping {
    let protocol = match p.protocol {
        Protocol::Tcp => pb::Protocol::Tcp,
        Protocol::Udp => pb::Protocol::Udp,
    };
    pb::PortMapping {
        protocol: protocol.into(),
        host_port: p.host_port.into(),
        container_port: p.container_port.into(),
        container_ip: p.container_ip.to_string(),
        host_ip: p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
    }
}

/// An endpoint.
pub fn endpoint(ep: Endpoint) -> pb::Endpoint {
    let r = ep.request;
    pb::Endpoint {
        network: r.network.into(),
        container_id: r.container.as_str().to_owned(),
        ifname: r.ifname.as_str().to_owned(),
        netns: r.netns.as_path().display().to_string(),
        addresses: texts(&ep.addresses),
        gateways: texts(&ep.gateways),
        mac: ep.mac,
        host_ifname: ep.host_ifname.as_str().to_owned(),
        routes: texts(&ep.routes),
        ports: ep.ports.iter().map(port).collect(),
        labels: r.labels.into_iter().collect::<HashMap<_, _>>(),
    }
}

/// A container interface.
pub fn attachment(h: Handle) -> pb::Attachment {
    pb::Attachment {
        container_id: h.container.as_str().to_owned(),
        ifname: h.ifname.as_str().to_owned(),
    }
}

/// Readiness, with the node's name and this build's version.
pub fn status(s: Status, node: &str) -> pb::StatusResponse {
    pb::StatusResponse {
        ready: s.ready,
        reasons: s.reasons,
        node: node.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        networks: u32::try_from(s.networks).unwrap_or(u32::MAX),
        endpoints: u32::try_from(s.endpoints).unwrap_or(u32::MAX),
        warnings: s.warnings,
    }
}

/// An event. A network in an event carries no endpoint count (0): counting
/// would need the store on every event, and watchers count endpoint events.
/// `None` for what the API does not watch: `BlocksChanged` is for the
/// node's own route announcer, and carries no object.
pub fn event(e: Event) -> Option<pb::Event> {
    use pb::event::{Kind, Object};
    let (kind, object) = match e {
        Event::NetworkCreated(n) => (Kind::NetworkCreated, Object::Network(network(n, 0))),
        Event::NetworkDeleted(n) => (Kind::NetworkDeleted, Object::Network(network(n, 0))),
        Event::EndpointAttached(ep) => (Kind::EndpointAttached, Object::Endpoint(endpoint(ep))),
        Event::EndpointDetached(ep) => (Kind::EndpointDetached, Object::Endpoint(endpoint(ep))),
        Event::BlocksChanged => return None,
    };
    Some(pb::Event {
        kind: kind.into(),
        object: Some(object),
    })
}
