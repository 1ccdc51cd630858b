//! What callers ask for and what the agent records.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use trellis_types::{ContainerId, Handle, IfName, InvalidInput, NetnsPath, PortMapping, Protocol};

/// A request to create a bridge network (Docker's `docker0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The network's name: 1..=63 bytes of `[A-Za-z0-9_.-]`; also its IPAM pool.
    pub name: String,
    /// The bridge subnet (`192.168.169.0/24`); host bits must be clear.
    pub subnet: IpNet,
    /// The bridge's address; `None` takes the first host address (`.1`).
    pub gateway: Option<IpAddr>,
    /// The bridge's name (`trellis0`).
    pub bridge: IfName,
    /// Masquerade traffic that leaves the host from this subnet.
    pub masquerade: bool,
    /// MTU of the bridge and its veths; `None` leaves the kernel's default.
    pub mtu: Option<u32>,
}

/// A network as recorded: the spec with its gateway resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The request, with `gateway` filled in.
    pub spec: NetworkSpec,
    /// The bridge's address.
    pub gateway: IpAddr,
}

impl Network {
    /// The bridge's address with the subnet's prefix length (`192.168.169.1/24`).
    pub fn gateway_net(&self) -> IpNet {
        IpNet::new(self.gateway, self.spec.subnet.prefix_len())
            .expect("prefix length of a valid subnet")
    }
}

/// A port to publish for an endpoint: the container address is filled in by
/// the agent once the address is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// TCP or UDP.
    pub protocol: Protocol,
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
            host_port: m.host_port,
            container_port: m.container_port,
        })
    }

    /// The mapping to `ip`.
    pub fn to(self, ip: IpAddr) -> PortMapping {
        PortMapping {
            protocol: self.protocol,
            host_port: self.host_port,
            container_ip: ip,
            container_port: self.container_port,
        }
    }
}

/// A request to attach a container to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// The network.
    pub network: String,
    /// The container.
    pub container: ContainerId,
    /// The container's network namespace.
    pub netns: NetnsPath,
    /// The interface name inside the container (`eth0`).
    pub ifname: IfName,
    /// Ports to publish.
    pub ports: Vec<PortSpec>,
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
    /// The container's addresses, with the subnet's prefix length.
    pub addresses: Vec<IpNet>,
    /// The default gateway inside the container.
    pub gateway: IpAddr,
    /// The container interface's MAC (`02:…`).
    pub mac: String,
    /// The host end of the veth.
    pub host_ifname: IfName,
    /// The routes installed inside the container.
    pub routes: Vec<IpNet>,
    /// The published ports, resolved to the container's address.
    pub ports: Vec<PortMapping>,
}
