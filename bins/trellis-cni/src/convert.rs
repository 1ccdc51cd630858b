//! Between the CNI's documents and trellisd's messages: the conflist as a
//! network spec (and whether it agrees with the network that exists), the
//! runtime's capabilities as an attach request, the endpoint as a CNI
//! result, and trellisd's gRPC statuses as CNI error codes.

use crate::env::Env;
use crate::spec::{CniError, CniResult, Interface, IpConfig, NetConf, RouteConfig, code};
use ipnet::IpNet;
use serde_json::Value;
use std::net::IpAddr;
use trellis_proto::v1 as pb;

/// The MAC of every routed host end (trellis-route's `ROUTED_HOST_MAC`).
const ROUTED_HOST_MAC: &str = "ee:ee:ee:ee:ee:ee";

fn invalid(field: &str, value: impl std::fmt::Debug, why: &str) -> CniError {
    CniError::new(
        code::INVALID_CONFIG,
        format!("network configuration: {field} {value:?}: {why}"),
    )
}

/// The trellis network: `network`, else the conflist's `name`.
pub fn network_name(conf: &NetConf) -> Result<String, CniError> {
    let name = conf.network.as_deref().unwrap_or(&conf.name);
    if name.is_empty() {
        return Err(invalid(
            "name",
            name,
            "the conflist names no network (name, or network)",
        ));
    }
    Ok(name.to_owned())
}

fn mode(conf: &NetConf) -> Result<pb::NetworkMode, CniError> {
    match conf.mode.as_deref() {
        None | Some("bridge") => Ok(pb::NetworkMode::Bridge),
        Some("routed") => Ok(pb::NetworkMode::Routed),
        Some(other) => Err(CniError::new(
            code::UNSUPPORTED_FIELD,
            format!("network configuration: mode {other:?} is not supported (bridge or routed)"),
        )),
    }
}

fn subnets(conf: &NetConf) -> Result<Option<Vec<IpNet>>, CniError> {
    let list: Vec<&String> = match (&conf.subnet, &conf.subnets) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "subnet",
                conf.subnet.as_deref().unwrap_or_default(),
                "give subnet or subnets, not both",
            ));
        }
        (Some(one), None) => vec![one],
        (None, Some(many)) => many.iter().collect(),
        (None, None) => return Ok(None),
    };
    list.into_iter()
        .map(|s| {
            s.parse::<IpNet>()
                .map_err(|_| invalid("subnets", s, "not a CIDR prefix"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Checks the conflist's own fields (name, mode, subnets) without
/// trellisd: a configuration that could never work fails before any call.
pub fn validate(conf: &NetConf) -> Result<(), CniError> {
    network_name(conf)?;
    mode(conf)?;
    subnets(conf)?;
    Ok(())
}

/// The network spec the conflist describes, for a network to create.
pub fn network_spec(conf: &NetConf) -> Result<pb::NetworkSpec, CniError> {
    let mode = mode(conf)?;
    let subnets = subnets(conf)?.unwrap_or_default();
    if subnets.is_empty() && conf.subnet_pool.is_none() {
        return Err(invalid(
            "subnets",
            "",
            "the network does not exist yet and the conflist gives no subnet to create it with",
        ));
    }
    let internal = conf.internal.unwrap_or(false);
    let routable = conf.routable.unwrap_or(false);
    Ok(pb::NetworkSpec {
        name: network_name(conf)?,
        mode: mode as i32,
        subnets: subnets.iter().map(ToString::to_string).collect(),
        gateway: conf.gateway.clone().unwrap_or_default(),
        bridge: conf.bridge.clone().unwrap_or_default(),
        outgoing_nat: conf.masquerade.unwrap_or(!internal && !routable),
        mtu: conf.mtu.unwrap_or(0),
        internal,
        routable,
        subnet_pool: conf.subnet_pool.clone().unwrap_or_default(),
        ..Default::default()
    })
}

/// Whether the existing `network` is what the conflist says, for every
/// field the conflist gives: a conflist may leave fields out, never
/// contradict.
pub fn agrees(conf: &NetConf, network: &pb::Network) -> Result<(), CniError> {
    let Some(spec) = &network.spec else {
        return Ok(());
    };
    let mut differ = Vec::new();
    let want_mode = mode(conf)?;
    if conf.mode.is_some() && spec.mode != want_mode as i32 {
        differ.push(format!(
            "mode {:?} (the network is {})",
            conf.mode.as_deref().unwrap_or_default(),
            pb::NetworkMode::try_from(spec.mode)
                .map_or("unknown", |m| m.as_str_name())
                .trim_start_matches("NETWORK_MODE_")
                .to_ascii_lowercase()
        ));
    }
    if let Some(want) = subnets(conf)? {
        let have: Vec<IpNet> = spec.subnets.iter().filter_map(|s| s.parse().ok()).collect();
        let (mut w, mut h) = (want.clone(), have.clone());
        w.sort();
        h.sort();
        if w != h {
            differ.push(format!(
                "subnets {} (the network has {})",
                list(&want),
                list(&have)
            ));
        }
    }
    let mut field = |name: &str, want: Option<String>, have: String| {
        if let Some(want) = want
            && want != have
        {
            differ.push(format!("{name} {want:?} (the network has {have:?})"));
        }
    };
    field("gateway", conf.gateway.clone(), spec.gateway.clone());
    field("bridge", conf.bridge.clone(), spec.bridge.clone());
    field(
        "masquerade",
        conf.masquerade.map(|b| b.to_string()),
        spec.outgoing_nat.to_string(),
    );
    field("mtu", conf.mtu.map(|m| m.to_string()), spec.mtu.to_string());
    field(
        "internal",
        conf.internal.map(|b| b.to_string()),
        spec.internal.to_string(),
    );
    field(
        "routable",
        conf.routable.map(|b| b.to_string()),
        spec.routable.to_string(),
    );
    field(
        "subnetPool",
        conf.subnet_pool.clone(),
        spec.subnet_pool.clone(),
    );
    if differ.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        code::CONFLICT,
        format!(
            "the conflist contradicts trellis network {:?}: {}",
            spec.name,
            differ.join("; ")
        ),
    )
    .with_details(
        "change the conflist, or delete the network (netctl network rm) so that ADD creates it anew",
    ))
}

fn list(nets: &[IpNet]) -> String {
    let v: Vec<String> = nets.iter().map(ToString::to_string).collect();
    format!("[{}]", v.join(", "))
}

/// The attach request: the container from the environment, ports from
/// `portMappings`, addresses from `ips` (or `args.cni.ips`, or `CNI_ARGS`
/// `IP`), the MAC from `mac` (or `CNI_ARGS` `MAC`).
pub fn attach_request(conf: &NetConf, env: &Env) -> Result<pb::AttachRequest, CniError> {
    let mut ports = Vec::new();
    for (i, p) in conf.runtime_config.port_mappings.iter().enumerate() {
        let field = format!("runtimeConfig.portMappings[{i}]");
        let protocol = match p
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("tcp") => pb::Protocol::Tcp,
            Some("udp") => pb::Protocol::Udp,
            Some(other) => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!("{field}.protocol {other:?} is not supported (tcp or udp)"),
                ));
            }
        };
        ports.push(pb::PortMapping {
            protocol: protocol as i32,
            host_port: p.host_port,
            container_port: p.container_port,
            container_ip: String::new(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        });
    }
    let args_ips: Vec<String> = conf
        .args
        .as_ref()
        .and_then(|a| a.pointer("/cni/ips"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // The capability first (the runtime's own), then the conventions'
    // config args, then CNI_ARGS.
    let (source, ips) = if !conf.runtime_config.ips.is_empty() {
        ("runtimeConfig.ips", &conf.runtime_config.ips)
    } else if !args_ips.is_empty() {
        ("args.cni.ips", &args_ips)
    } else {
        ("CNI_ARGS IP", &env.args.ips)
    };
    let mut fixed = Vec::new();
    for ip in ips {
        let addr = ip.split_once('/').map_or(ip.as_str(), |(a, _)| a);
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| invalid(source, ip, "not an IP address"))?;
        fixed.push(addr.to_string());
    }
    let mac = conf
        .runtime_config
        .mac
        .clone()
        .or_else(|| env.args.mac.clone())
        .unwrap_or_default();
    Ok(pb::AttachRequest {
        network: network_name(conf)?,
        container_id: env.container_id.clone(),
        netns: env.netns.clone(),
        ifname: env.ifname.clone(),
        ports,
        fixed_addresses: fixed,
        labels: Default::default(),
        mac,
    })
}

/// The CNI result of endpoint `ep` on `network`.
pub fn result(
    conf: &NetConf,
    network: &pb::Network,
    ep: &pb::Endpoint,
) -> Result<CniResult, CniError> {
    let mtu = network.spec.as_ref().map(|s| s.mtu).filter(|m| *m > 0);
    // The host end's MAC is known for routed networks (every host end
    // answers proxy-ARP as ee:ee:ee:ee:ee:ee); a bridge port's is the
    // kernel's choice, which trellisd does not record.
    let routed = network
        .spec
        .as_ref()
        .is_some_and(|s| s.mode == pb::NetworkMode::Routed as i32);
    let interfaces = vec![
        Interface {
            name: ep.host_ifname.clone(),
            mac: routed.then(|| ROUTED_HOST_MAC.to_owned()),
            sandbox: None,
            mtu,
        },
        Interface {
            name: ep.ifname.clone(),
            mac: Some(ep.mac.clone()).filter(|m| !m.is_empty()),
            sandbox: Some(ep.netns.clone()),
            mtu,
        },
    ];
    let gateways: Vec<IpAddr> = ep
        .gateways
        .iter()
        .map(|g| parse_back("gateway", g))
        .collect::<Result<_, _>>()?;
    let gateway_of = |v4: bool| gateways.iter().copied().find(|g| g.is_ipv4() == v4);
    let mut ips = Vec::new();
    for a in &ep.addresses {
        let address: IpNet = parse_back("address", a)?;
        ips.push(IpConfig {
            address,
            gateway: gateway_of(address.addr().is_ipv4()),
            interface: 1,
        });
    }
    let mut routes = Vec::new();
    for r in &ep.routes {
        let dst: IpNet = parse_back("route", r)?;
        let gw = gateway_of(dst.addr().is_ipv4());
        // The route to the gateway itself is on-link.
        let on_link = gw.is_some_and(|g| dst == IpNet::from(g));
        routes.push(RouteConfig {
            dst,
            gw: if on_link { None } else { gw },
        });
    }
    Ok(CniResult {
        interfaces,
        ips,
        routes,
        dns: conf.dns.clone(),
    })
}

fn parse_back<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, CniError> {
    s.parse().map_err(|_| {
        CniError::new(
            code::INTERNAL,
            format!("trellisd answered a {what} that does not parse: {s:?}"),
        )
    })
}

/// CHECK: the previous result's container addresses are the endpoint's.
pub fn prev_result_matches(prev: &Value, ep: &pb::Endpoint) -> Result<(), CniError> {
    let mut want: Vec<String> = prev
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut have = ep.addresses.clone();
    want.sort();
    have.sort();
    if want == have {
        return Ok(());
    }
    Err(CniError::new(
        code::CHECK_FAILED,
        format!(
            "prevResult has addresses [{}], the endpoint has [{}]",
            want.join(", "),
            have.join(", ")
        ),
    ))
}

/// trellisd's refusal of `what` as a CNI error: out of reach or busy is
/// "try again later"; a refusal keeps its gRPC code and message in the
/// details.
pub fn status_error(what: &str, s: &tonic::Status) -> CniError {
    use tonic::Code::*;
    let c = match s.code() {
        Unavailable | DeadlineExceeded | Cancelled | Aborted => code::TRY_AGAIN,
        InvalidArgument | OutOfRange => code::REFUSED,
        ResourceExhausted => code::EXHAUSTED,
        AlreadyExists => code::CONFLICT,
        FailedPrecondition => code::PRECONDITION,
        NotFound => code::INVALID_CONFIG,
        PermissionDenied | Unauthenticated => code::REFUSED,
        _ => code::INTERNAL,
    };
    CniError::new(c, format!("trellisd: {what}: {}", s.message()))
        .with_details(format!("gRPC status {:?}", s.code()))
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
