//! Checks of an attach request's free-form fields, before anything changes.
//!
//! Ports, names and paths are checked by their types and by the kernel-facing
//! crates; what is left is what only the agent can judge: fixed addresses
//! against the network's subnets, labels, and whether a requested MAC may
//! be an interface's.

use crate::model::{AttachRequest, Network};
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_types::InvalidInput;

/// Longest label key and value, in bytes (Kubernetes' name-part and a
/// generous value bound).
const MAX_KEY: usize = 63;
const MAX_VALUE: usize = 255;

/// Checks labels, ports, the interface name, the MAC and fixed addresses;
/// `Ok` changes nothing either.
pub(crate) fn check_request(req: &AttachRequest, net: &Network) -> Result<(), InvalidInput> {
    check_labels(req)?;
    check_ports(req, net)?;
    req.ifname.check_creatable("ifname")?;
    if let Some(mac) = req.mac {
        mac.check_assignable("mac")?;
    }
    check_fixed(&req.fixed_addresses, net)
}

/// No port on an internal network (nothing reaches it); a host address must
/// be a unicast address of a family the network has a subnet of.
fn check_ports(req: &AttachRequest, net: &Network) -> Result<(), InvalidInput> {
    let Some(first) = req.ports.first() else {
        return Ok(());
    };
    if net.spec.internal {
        let why = format!(
            "network {:?} is internal: nothing off its bridge reaches it, so no port can be published",
            net.spec.name
        );
        return Err(InvalidInput::new("ports", first.host_port, why));
    }
    for h in req.ports.iter().filter_map(|p| p.host_ip) {
        if h.is_unspecified() || h.is_multicast() || h == IpAddr::from([255, 255, 255, 255]) {
            let why =
                "a host address must be one unicast address (leave it empty for every address)";
            return Err(InvalidInput::new("host_ip", h, why));
        }
        if !net
            .spec
            .subnets
            .iter()
            .any(|s| s.addr().is_ipv4() == h.is_ipv4())
        {
            let why = format!(
                "network {:?} has no subnet of this address's family ({})",
                net.spec.name,
                shown(&net.spec.subnets)
            );
            return Err(InvalidInput::new("host_ip", h, why));
        }
    }
    Ok(())
}

fn check_labels(req: &AttachRequest) -> Result<(), InvalidInput> {
    for (k, v) in &req.labels {
        let key_ok = (1..=MAX_KEY).contains(&k.len())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
        if !key_ok {
            let why = "label key must be 1 to 63 bytes of [A-Za-z0-9_.-/]";
            return Err(InvalidInput::new("labels", k, why));
        }
        if v.len() > MAX_VALUE {
            let why = format!("value of label {k:?} is longer than {MAX_VALUE} bytes");
            return Err(InvalidInput::new("labels", format!("{k}={v}"), why));
        }
    }
    Ok(())
}

fn check_fixed(fixed: &[IpAddr], net: &Network) -> Result<(), InvalidInput> {
    let field = "fixed_addresses";
    for (i, &ip) in fixed.iter().enumerate() {
        if fixed[..i].iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            return Err(InvalidInput::new(
                field,
                ip,
                "at most one fixed address per address family",
            ));
        }
        let Some(subnet) = net.spec.subnets.iter().find(|s| s.contains(&ip)) else {
            let why = format!(
                "address is outside the subnets of network {:?} ({})",
                net.spec.name,
                shown(&net.spec.subnets)
            );
            return Err(InvalidInput::new(field, ip, why));
        };
        if net.gateways.contains(&ip) || is_edge(subnet, ip, net) {
            let why = format!("address is reserved in {subnet} (network, broadcast or gateway)");
            return Err(InvalidInput::new(field, ip, why));
        }
    }
    Ok(())
}

/// The network and broadcast addresses of a bridge subnet are never a host's.
fn is_edge(subnet: &IpNet, ip: IpAddr, net: &Network) -> bool {
    net.spec.bridge().is_some()
        && (ip == subnet.network() || (subnet.addr().is_ipv4() && ip == subnet.broadcast()))
}

fn shown(subnets: &[IpNet]) -> String {
    let v: Vec<String> = subnets.iter().map(ToString::to_string).collect();
    v.join(", ")
}
