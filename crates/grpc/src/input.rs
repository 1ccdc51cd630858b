//! Requests in: every field checked and turned into a core type.
//!
//! Sizes are bounded here, before anything is parsed or stored, so that a
//! request cannot make the agent record megabytes of label or walk a million
//! ports. Everything else about a value's shape is checked by the type it
//! becomes (`IfName`, `ContainerId`, `NetnsPath`, `PortSpec`) or, for what
//! needs the agent's state (overlaps, fixed addresses, label syntax), by the
//! core. Errors name the field as the proto spells it.

use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use trellis_agent::{AttachRequest, EndpointFilter, NetworkMode, NetworkSpec, PortSpec};
use trellis_proto::v1 as pb;
use trellis_types::{
    ContainerId, Handle, IfName, InvalidInput, MacAddr, NetnsPath, NetworkName, PoolName, Protocol,
};

/// Longest string accepted in any field, in bytes.
pub const MAX_TEXT: usize = 4096;
/// Most ports in one attach.
pub const MAX_PORTS: usize = 1024;
/// Most labels on one endpoint or in one filter.
pub const MAX_LABELS: usize = 64;
/// Most subnets of a network, or fixed addresses of an attach.
pub const MAX_ADDRESSES: usize = 16;
/// At most this many networks in a network's `reach`.
pub const MAX_REACH: usize = 64;
/// Most attachments in one garbage-collection request.
pub const MAX_VALID: usize = 65536;

/// The interface name that an empty `ifname` stands for.
pub const DEFAULT_IFNAME: &str = "eth0";

type Result<T> = std::result::Result<T, InvalidInput>;

/// `s`, unless longer than [`MAX_TEXT`].
pub fn text<'a>(field: &'static str, s: &'a str) -> Result<&'a str> {
    if s.len() > MAX_TEXT {
        let head: String = s.chars().take(32).collect();
        let why = format!("{field} is {} bytes, longer than {MAX_TEXT}", s.len());
        return Err(InvalidInput::new(field, format!("{head}…"), why));
    }
    Ok(s)
}

/// `s`, unless empty or too long.
pub fn required<'a>(field: &'static str, s: &'a str) -> Result<&'a str> {
    if s.is_empty() {
        return Err(InvalidInput::new(field, s, format!("{field} is required")));
    }
    text(field, s)
}

/// `items`, unless more than `max` of them.
pub(crate) fn bounded<T>(field: &'static str, items: &[T], max: usize) -> Result<()> {
    if items.len() > max {
        let why = format!("at most {max} {field} are accepted");
        return Err(InvalidInput::new(
            field,
            format!("{} items", items.len()),
            why,
        ));
    }
    Ok(())
}

/// A network's name (as `field`), as given to Get/Delete/Attach.
pub fn network_name(field: &'static str, s: &str) -> Result<NetworkName> {
    NetworkName::parse(field, required(field, s)?)
}

/// A network spec.
pub fn network_spec(spec: Option<pb::NetworkSpec>) -> Result<NetworkSpec> {
    let spec = spec.ok_or_else(|| InvalidInput::new("spec", "", "spec is required"))?;
    let name = NetworkName::parse("name", text("name", &spec.name)?)?;
    bounded("subnets", &spec.subnets, MAX_ADDRESSES)?;
    let subnets = spec
        .subnets
        .iter()
        .map(|s| parse::<IpNet>("subnets", s, "not a prefix like 10.0.0.0/24 or fd00::/64"))
        .collect::<Result<Vec<_>>>()?;
    let gateway = match text("gateway", &spec.gateway)? {
        "" => None,
        g => Some(parse::<IpAddr>("gateway", g, "not an IP address")?),
    };
    let mode = mode(spec.mode, &spec.bridge)?;
    let mtu = mtu(spec.mtu, &subnets)?;
    bounded("reach", &spec.reach, MAX_REACH)?;
    let reach = spec
        .reach
        .iter()
        .map(|r| NetworkName::parse("reach", text("reach", r)?))
        .collect::<Result<Vec<_>>>()?;
    let subnet_pool = match text("subnet_pool", &spec.subnet_pool)? {
        "" => None,
        p => Some(PoolName::parse("subnet_pool", p)?),
    };
    Ok(NetworkSpec {
        subnet_pool,
        // Not the caller's to set: the node fills them in.
        cluster_pools: Vec::new(),
        name,
        mode,
        subnets,
        gateway,
        masquerade: spec.outgoing_nat,
        mtu,
        internal: spec.internal,
        // Checked against mode, internal and outgoing_nat by the core.
        routable: spec.routable,
        reach,
    })
}

fn mode(mode: i32, bridge: &str) -> Result<NetworkMode> {
    match pb::NetworkMode::try_from(mode) {
        Ok(pb::NetworkMode::Bridge) => Ok(NetworkMode::Bridge {
            bridge: IfName::parse("bridge", text("bridge", bridge)?)?,
        }),
        Ok(pb::NetworkMode::Routed) if bridge.is_empty() => Ok(NetworkMode::Routed),
        Ok(pb::NetworkMode::Routed) => Err(InvalidInput::new(
            "bridge",
            text("bridge", bridge)?,
            "routed networks have no bridge",
        )),
        _ => Err(InvalidInput::new(
            "mode",
            mode,
            "mode must be NETWORK_MODE_BRIDGE or NETWORK_MODE_ROUTED",
        )),
    }
}

/// 0 leaves the default; otherwise what the kernel accepts for the families
/// (IPv4 needs 68 bytes, IPv6 1280), refused here rather than half-way
/// through creating the bridge.
fn mtu(mtu: u32, subnets: &[IpNet]) -> Result<Option<u32>> {
    if mtu == 0 {
        return Ok(None);
    }
    let min = if subnets.iter().any(|s| matches!(s, IpNet::V6(_))) {
        1280
    } else {
        68
    };
    if !(min..=65535).contains(&mtu) {
        let why = format!("mtu must be 0 (default) or {min} to 65535");
        return Err(InvalidInput::new("mtu", mtu, why));
    }
    Ok(Some(mtu))
}

/// `s` (bounded by [`MAX_TEXT`]) parsed as a `T`; `why` says what was expected.
pub(crate) fn parse<T: std::str::FromStr>(field: &'static str, s: &str, why: &str) -> Result<T> {
    text(field, s)?
        .parse()
        .map_err(|_| InvalidInput::new(field, s, why))
}

/// An interface name; empty means [`DEFAULT_IFNAME`].
pub fn ifname(s: &str) -> Result<IfName> {
    match text("ifname", s)? {
        "" => IfName::parse("ifname", DEFAULT_IFNAME),
        s => IfName::parse("ifname", s),
    }
}

/// A container interface, as Detach/GetEndpoint/Check/GC name it.
pub fn handle(container_id: &str, ifname_: &str) -> Result<Handle> {
    let container = ContainerId::parse("container_id", text("container_id", container_id)?)?;
    Ok(Handle::new(container, ifname(ifname_)?))
}

/// An attach request.
pub fn attach_request(r: pb::AttachRequest) -> Result<AttachRequest> {
    let network = network_name("network", &r.network)?;
    let Handle { container, ifname } = handle(&r.container_id, &r.ifname)?;
    let netns = NetnsPath::parse("netns", text("netns", &r.netns)?)?;
    bounded("ports", &r.ports, MAX_PORTS)?;
    let ports = r.ports.iter().map(port).collect::<Result<Vec<_>>>()?;
    bounded("fixed_addresses", &r.fixed_addresses, MAX_ADDRESSES)?;
    let fixed_addresses = r
        .fixed_addresses
        .iter()
        .map(|a| parse::<IpAddr>("fixed_addresses", a, "not an IP address"))
        .collect::<Result<Vec<_>>>()?;
    let mac = match text("mac", &r.mac)? {
        "" => None,
        m => Some(MacAddr::parse("mac", m)?),
    };
    Ok(AttachRequest {
        network,
        container,
        netns,
        ifname,
        ports,
        fixed_addresses,
        labels: labels(r.labels)?,
        // Whether it may be an interface's is the core's to judge.
        mac,
    })
}

fn port(p: &pb::PortMapping) -> Result<PortSpec> {
    let protocol = match pb::Protocol::try_from(p.protocol) {
        Ok(pb::Protocol::Tcp) => Protocol::Tcp,
        Ok(pb::Protocol::Udp) => Protocol::Udp,
        _ => {
            let why = "protocol must be PROTOCOL_TCP or PROTOCOL_UDP";
            return Err(InvalidInput::new("protocol", p.protocol, why));
        }
    };
    let host_ip = match text("host_ip", &p.host_ip)? {
        "" => None,
        ip => match parse::<IpAddr>("host_ip", ip, "not an IP address")? {
            // 0.0.0.0 and :: are Docker's spelling of "every address".
            ip if ip.is_unspecified() => None,
            ip => Some(ip),
        },
    };
    Ok(PortSpec::new(protocol, p.host_port, p.container_port)?.on(host_ip))
}

/// Labels, bounded in number and size; their syntax is the core's to judge.
pub fn labels(labels: HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    labels_in("labels", labels)
}

/// [`labels`] of the field `field` (`spec.labels` of a node).
pub fn labels_in(
    field: &'static str,
    labels: HashMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    if labels.len() > MAX_LABELS {
        let why = format!("at most {MAX_LABELS} labels are accepted");
        return Err(InvalidInput::new(field, labels.len(), why));
    }
    for (k, v) in &labels {
        text(field, k)?;
        text(field, v)?;
    }
    Ok(labels.into_iter().collect())
}

/// A list filter; empty fields match everything.
pub fn filter(r: pb::ListEndpointsRequest) -> Result<EndpointFilter> {
    let network = match text("network", &r.network)? {
        "" => None,
        n => Some(NetworkName::parse("network", n)?),
    };
    let container = match text("container_id", &r.container_id)? {
        "" => None,
        c => Some(ContainerId::parse("container_id", c)?),
    };
    Ok(EndpointFilter {
        network,
        container,
        labels: labels(r.labels)?,
    })
}

/// The network a garbage collection is scoped to; empty is the whole node.
pub fn gc_network(network: &str) -> Result<Option<NetworkName>> {
    match text("network", network)? {
        "" => Ok(None),
        n => NetworkName::parse("network", n).map(Some),
    }
}

/// The attachments a garbage collection keeps.
pub fn valid(valid: &[pb::Attachment]) -> Result<Vec<Handle>> {
    bounded("valid", valid, MAX_VALID)?;
    valid
        .iter()
        .map(|a| handle(&a.container_id, &a.ifname))
        .collect()
}

#[cfg(test)]
#[path = "input_tests.rs"]
mod tests;
