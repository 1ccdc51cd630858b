//! What callers ask for and what the agent records.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use trellis_types::{
    ContainerId, Handle, IfName, InvalidInput, MacAddr, NetnsPath, NetworkName, PoolName,
    PortMapping, Protocol,
};

/// How a network reaches its containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Docker's model: a Linux bridge with a gateway address, containers on
    /// one L2 subnet, the default route via the bridge.
    Bridge {
        /// The bridge's name (`trellis0`).
        bridge: IfName,
    },
    /// Calico's model: each container has a /32 (/128), its default route via
    /// the link-local gateway `169.254.1.1` answered by proxy-ARP on the host
    /// end of its veth, and the host holds a route per container.
    Routed,
}

/// A request to create a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The network's name: 1..=60 bytes of `[A-Za-z0-9_.-]`.
    pub name: NetworkName,
    /// Bridge or routed.
    pub mode: NetworkMode,
    /// The address pools, at most one per family; host bits must be clear.
    /// Bridge mode: the bridge subnet (`192.168.169.0/24`), exactly one.
    /// Routed mode: pools that blocks are carved from (`10.244.0.0/16`, and
    /// optionally an IPv6 one for dual-stack endpoints).
    pub subnets: Vec<IpNet>,
    /// Bridge mode: the bridge's address; `None` takes the first host address.
    /// Must be `None` in routed mode, whose gateway is always `169.254.1.1`.
    pub gateway: Option<IpAddr>,
    /// Masquerade traffic that leaves the host from these subnets (routed
    /// mode: "outgoing NAT", for destinations outside every routed pool).
    pub masquerade: bool,
    /// MTU of the bridge and veths; `None` leaves the kernel's default.
    pub mtu: Option<u32>,
    /// Bridge mode: nothing is forwarded into or out of the bridge (Docker's
    /// `--internal`): its containers reach each other and the host only;
    /// nothing is masqueraded and no port can be published.
    #[serde(default)]
    pub internal: bool,
    /// Bridge mode: the network is reached from outside the host by its
    /// containers' own addresses (the seed's direct routing: a route to the
    /// subnet via the host, typed by hand or learnt by BGP). Its traffic is
    /// never masqueraded (so `masquerade` must be off) and its subnet is
    /// among the prefixes the node announces
    /// ([`crate::Agent::exported_prefixes`]). Not for `internal` networks,
    /// which nothing reaches, nor for routed networks, whose blocks are
    /// always announced.
    #[serde(default)]
    pub routable: bool,
    /// Bridge mode: the other bridge networks this one's containers may open
    /// connections to (replies flow back). Bridge networks are kept apart
    /// otherwise. Names of networks that do not exist (yet) take effect when
    /// they are created.
    #[serde(default)]
    pub reach: Vec<NetworkName>,
    /// Bridge mode, in a cluster: take the subnet from this controller pool
    /// (one subnet per node, so no two hosts' bridge subnets overlap); then
    /// `subnets` is left empty by the caller and filled in with the node's
    /// subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_pool: Option<PoolName>,
    /// In a cluster: the controller pool of each of `subnets` (same order).
    /// Set for the cluster's routed networks (their blocks are granted by
    /// the controller) and for bridge networks with a `subnet_pool`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_pools: Vec<ClusterPool>,
}

/// A controller pool one subnet of a network comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPool {
    /// The controller's pool.
    pub name: PoolName,
    /// Its block size (prefix length): the local pool's blocks are the
    /// controller's.
    pub block_len: u8,
}

impl NetworkSpec {
    /// The bridge, in bridge mode.
    pub fn bridge(&self) -> Option<&IfName> {
        match &self.mode {
            NetworkMode::Bridge { bridge } => Some(bridge),
            NetworkMode::Routed => None,
        }
    }
}

/// A network as recorded: the spec with its gateway resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The request, with `gateway` filled in for bridge networks.
    pub spec: NetworkSpec,
    /// The containers' gateways: the bridge's address, or the routed
    /// link-local gateways (`169.254.1.1`, and `fe80::ecee:eeff:feee:eeee`
    /// when the network has an IPv6 pool).
    pub gateways: Vec<IpAddr>,
    /// What the host should know about this network, found when it was
    /// created: routes of the host via a gateway that trellis's more specific
    /// routes shadow for the network's addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Network {
    /// Whether its addresses come from blocks a cluster controller grants
    /// (a cluster's routed network).
    pub fn granted(&self) -> bool {
        self.spec.mode == NetworkMode::Routed && !self.spec.cluster_pools.is_empty()
    }

    /// The controller pool that local pool `local` (one of
    /// [`Network::pools`]) takes its blocks from, in a cluster.
    pub fn cluster_pool_of(&self, local: &str) -> Option<&ClusterPool> {
        self.pools()
            .iter()
            .position(|(p, _)| p.as_str() == local)
            .and_then(|i| self.spec.cluster_pools.get(i))
    }

    /// The IPAM pool of each subnet: `<network>.v4`, `<network>.v6`.
    pub fn pools(&self) -> Vec<(PoolName, IpNet)> {
        self.spec
            .subnets
            .iter()
            .map(|s| (pool_name(&self.spec.name, s), *s))
            .collect()
    }
}

/// The IPAM pool name of a network's subnet.
pub fn pool_name(network: &NetworkName, subnet: &IpNet) -> PoolName {
    PoolName::of(network, *subnet)
}

/// A port to publish for an endpoint: the container address is filled in by
/// the agent once the address is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The one host address to publish on (Docker's `-p 127.0.0.1:8080:80`);
    /// `None` publishes on every address of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// The port on the host, 1..=65535.
    pub host_port: u16,
    /// The port in the container, 1..=65535.
    pub container_port: u16,
}

impl PortSpec {
    /// Validates ports that arrive as wider integers, naming the bad field.
    pub fn new(
        protocol: Protocol,
        host_port: u32,
        container_port: u32,
    ) -> Result<Self, InvalidInput> {
        // Reuse the one place that checks port ranges.
        let m = PortMapping::new(
            protocol,
            host_port,
            IpAddr::from([0, 0, 0, 0]),
            container_port,
        )?;
        Ok(Self {
            protocol,
            host_ip: None,
            host_port: m.host_port,
            container_port: m.container_port,
        })
    }

    /// The same port, published on `host_ip` only.
    pub fn on(self, host_ip: Option<IpAddr>) -> Self {
        Self { host_ip, ..self }
    }

    /// The mapping to `ip`.
    pub fn to(self, ip: IpAddr) -> PortMapping {
        PortMapping {
            protocol: self.protocol,
            host_ip: self.host_ip,
            host_port: self.host_port,
            container_ip: ip,
            container_port: self.container_port,
        }
    }

    /// Whether two ports claim the same host port: same protocol and port,
    /// on the same host address or either on all of them.
    pub fn clashes_with(&self, other: &PortSpec) -> bool {
        self.to(IpAddr::from([0, 0, 0, 0]))
            .clashes_with(&other.to(IpAddr::from([0, 0, 0, 0])))
    }
}

/// A request to attach a container to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// The network.
    pub network: NetworkName,
    /// The container.
    pub container: ContainerId,
    /// The container's network namespace.
    pub netns: NetnsPath,
    /// The interface name inside the container (`eth0`).
    pub ifname: IfName,
    /// Ports to publish.
    pub ports: Vec<PortSpec>,
    /// Addresses to give the container instead of the next free ones: at most
    /// one per address family of the network, inside its subnets.
    #[serde(default)]
    pub fixed_addresses: Vec<IpAddr>,
    /// Free-form labels, for filtering ([`EndpointFilter`]): keys 1..=63
    /// bytes of `[A-Za-z0-9_.-/]`, values at most 255 bytes.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The container interface's MAC (the CNI `mac` capability); `None`
    /// lets the agent derive one from (container, ifname). It must be
    /// unicast and not all zeros. Records from before it was asked for
    /// read as `None`, which is what those endpoints have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
}

impl AttachRequest {
    /// The IPAM handle of this attachment.
    pub fn handle(&self) -> Handle {
        Handle::new(self.container.clone(), self.ifname.clone())
    }
}

/// An attached endpoint, as recorded and as returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The request that made it.
    pub request: AttachRequest,
    /// The container's addresses: with the subnet's prefix length (bridge),
    /// or as /32 and /128 (routed).
    pub addresses: Vec<IpNet>,
    /// The default gateways inside the container, one per family.
    pub gateways: Vec<IpAddr>,
    /// The container interface's MAC, lower case: the request's, else
    /// derived from the host veth's name (`02:…`, locally administered).
    pub mac: String,
    /// The host end of the veth.
    pub host_ifname: IfName,
    /// The destinations of the routes installed inside the container.
    pub routes: Vec<IpNet>,
    /// The published ports, resolved to the container's address.
    pub ports: Vec<PortMapping>,
}

/// Which endpoints [`crate::Agent::list_endpoints`] returns: all conditions
/// that are set must hold (labels: every pair must be among the endpoint's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    /// Only endpoints of this network.
    pub network: Option<NetworkName>,
    /// Only endpoints of this container.
    pub container: Option<ContainerId>,
    /// Only endpoints carrying all of these labels.
    pub labels: BTreeMap<String, String>,
}

impl EndpointFilter {
    /// Whether `ep` passes the filter.
    pub fn matches(&self, ep: &Endpoint) -> bool {
        let r = &ep.request;
        self.network.as_ref().is_none_or(|n| *n == r.network)
            && self.container.as_ref().is_none_or(|c| *c == r.container)
            && self.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written before attaches could ask for a MAC.
    const OLD_REQUEST: &str = r#"{"network":"web","container":"c1","netns":"/run/netns/c1","ifname":"eth0","ports":[],"fixed_addresses":[],"labels":{}}"#;

    #[test]
    fn a_request_recorded_without_a_mac_reads_as_none_and_is_written_back_the_same() {
        let req: AttachRequest = serde_json::from_str(OLD_REQUEST).unwrap();
        assert_eq!(req.mac, None);
        assert_eq!(serde_json::to_string(&req).unwrap(), OLD_REQUEST);
        let with = AttachRequest {
            mac: Some("0A:58:00:00:00:01".parse().unwrap()),
            ..req.clone()
        };
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(json["mac"], "0a:58:00:00:00:01");
        let back: AttachRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, with);
        assert_ne!(back, req, "a MAC asked for makes another request");
    }
}
