//! What netctl prints, as plain serialisable structs.
//!
//! The generated proto messages are not serde types and carry enums as `i32`;
//! these views give JSON and YAML output stable snake_case field names and
//! enums as words (`"bridge"`, `"tcp"`), independent of how prost names things.
//! Field names are part of netctl's interface: rename none of them.

use std::collections::BTreeMap;

use serde::Serialize;
use trellis_proto::v1;

/// A network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkView {
    /// Its name.
    pub name: String,
    /// `bridge`, `routed` or `unspecified`.
    pub mode: String,
    /// Subnet (bridge) or pools (routed).
    pub subnets: Vec<String>,
    /// The containers' gateways.
    pub gateways: Vec<String>,
    /// The bridge's interface name; empty in routed mode.
    pub bridge: String,
    /// Whether traffic leaving the host is masqueraded.
    pub outgoing_nat: bool,
    /// The MTU; 0 for the kernel's default.
    pub mtu: u32,
    /// Whether nothing is forwarded into or out of the network.
    pub internal: bool,
    /// Whether it is reached from outside by its own addresses (not
    /// masqueraded, its subnet announced).
    pub routable: bool,
    /// The other bridge networks its containers may reach.
    pub reach: Vec<String>,
    /// How many endpoints are attached.
    pub endpoints: u32,
    /// What the host's administrator should know (routes of the host that
    /// the network's routes shadow); left out when there is nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl From<v1::Network> for NetworkView {
    fn from(n: v1::Network) -> Self {
        let spec = n.spec.unwrap_or_default();
        let mode = match v1::NetworkMode::try_from(spec.mode) {
            Ok(v1::NetworkMode::Bridge) => "bridge",
            Ok(v1::NetworkMode::Routed) => "routed",
            _ => "unspecified",
        };
        let gateways = match n.gateways.is_empty() {
            true if !spec.gateway.is_empty() => vec![spec.gateway],
            _ => n.gateways,
        };
        NetworkView {
            name: spec.name,
            mode: mode.to_owned(),
            subnets: spec.subnets,
            gateways,
            bridge: spec.bridge,
            outgoing_nat: spec.outgoing_nat,
            mtu: spec.mtu,
            internal: spec.internal,
            routable: spec.routable,
            reach: spec.reach,
            endpoints: n.endpoints,
            warnings: n.warnings,
        }
    }
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortView {
    /// `tcp`, `udp` or `unspecified`.
    pub protocol: String,
    /// The one host address it is published on; empty: every address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    /// The port on the host.
    pub host_port: u32,
    /// The port in the container.
    pub container_port: u32,
    /// The container's address the port leads to.
    pub container_ip: String,
}

impl From<v1::PortMapping> for PortView {
    fn from(p: v1::PortMapping) -> Self {
        let protocol = match v1::Protocol::try_from(p.protocol) {
            Ok(v1::Protocol::Tcp) => "tcp",
            Ok(v1::Protocol::Udp) => "udp",
            _ => "unspecified",
        };
        PortView {
            protocol: protocol.to_owned(),
            host_ip: p.host_ip,
            host_port: p.host_port,
            container_port: p.container_port,
            container_ip: p.container_ip,
        }
    }
}

impl PortView {
    /// Docker's spelling: `8081->80/tcp`, `127.0.0.1:8081->80/tcp`.
    pub fn short(&self) -> String {
        let host = match self.host_ip.as_str() {
            "" => String::new(),
            ip if ip.contains(':') => format!("[{ip}]:"),
            ip => format!("{ip}:"),
        };
        format!(
            "{host}{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// An endpoint: one interface of one container on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointView {
    /// The network.
    pub network: String,
    /// The container's id.
    pub container_id: String,
    /// The interface in the container.
    pub ifname: String,
    /// The container's network namespace.
    pub netns: String,
    /// Addresses with prefix length.
    pub addresses: Vec<String>,
    /// The container's gateways.
    pub gateways: Vec<String>,
    /// The container interface's MAC address.
    pub mac: String,
    /// The host end of the veth.
    pub host_ifname: String,
    /// Destinations of the routes in the container.
    pub routes: Vec<String>,
    /// Published ports.
    pub ports: Vec<PortView>,
    /// Labels, sorted by key.
    pub labels: BTreeMap<String, String>,
}

impl From<v1::Endpoint> for EndpointView {
    fn from(e: v1::Endpoint) -> Self {
        EndpointView {
            network: e.network,
            container_id: e.container_id,
            ifname: e.ifname,
            netns: e.netns,
            addresses: e.addresses,
            gateways: e.gateways,
            mac: e.mac,
            host_ifname: e.host_ifname,
            routes: e.routes,
            ports: e.ports.into_iter().map(PortView::from).collect(),
            labels: e.labels.into_iter().collect(),
        }
    }
}

/// The answer of `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckView {
    /// The container checked.
    pub container_id: String,
    /// Its interface (empty: the server's default).
    pub ifname: String,
    /// Whether the kernel matches the record.
    pub ok: bool,
    /// What differs, one line each.
    pub problems: Vec<String>,
}

/// An attachment: a container and one interface of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentView {
    /// The container's id.
    pub container_id: String,
    /// The interface in the container.
    pub ifname: String,
}

/// The answer of `gc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcView {
    /// What was removed.
    pub removed: Vec<AttachmentView>,
    /// Removals that failed.
    pub errors: Vec<String>,
}

impl From<v1::GarbageCollectResponse> for GcView {
    fn from(r: v1::GarbageCollectResponse) -> Self {
        let removed = r.removed.into_iter().map(|a| AttachmentView {
            container_id: a.container_id,
            ifname: a.ifname,
        });
        GcView {
            removed: removed.collect(),
            errors: r.errors,
        }
    }
}

/// The answer of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// Whether trellisd is ready.
    pub ready: bool,
    /// Why not, one line each.
    pub reasons: Vec<String>,
    /// The node's name.
    pub node: String,
    /// trellisd's version.
    pub version: String,
    /// How many networks exist.
    pub networks: u32,
    /// How many endpoints exist.
    pub endpoints: u32,
    /// What trellisd could not do on the host, one line each.
    pub warnings: Vec<String>,
}

impl From<v1::StatusResponse> for StatusView {
    fn from(s: v1::StatusResponse) -> Self {
        StatusView {
            ready: s.ready,
            reasons: s.reasons,
            node: s.node,
            version: s.version,
            networks: s.networks,
            endpoints: s.endpoints,
            warnings: s.warnings,
        }
    }
}

/// One event of `watch`: its kind and the object it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    /// `network_created`, `network_deleted`, `endpoint_attached`,
    /// `endpoint_detached` or `unspecified`.
    pub kind: String,
    /// The network, for network events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkView>,
    /// The endpoint, for endpoint events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointView>,
}

impl From<v1::Event> for EventView {
    fn from(e: v1::Event) -> Self {
        use v1::event::{Kind, Object};
        let kind = match Kind::try_from(e.kind) {
            Ok(Kind::NetworkCreated) => "network_created",
            Ok(Kind::NetworkDeleted) => "network_deleted",
            Ok(Kind::EndpointAttached) => "endpoint_attached",
            Ok(Kind::EndpointDetached) => "endpoint_detached",
            _ => "unspecified",
        };
        let (network, endpoint) = match e.object {
            Some(Object::Network(n)) => (Some(n.into()), None),
            Some(Object::Endpoint(ep)) => (None, Some(ep.into())),
            None => (None, None),
        };
        EventView {
            kind: kind.to_owned(),
            network,
            endpoint,
        }
    }
}
