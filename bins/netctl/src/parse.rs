//! Parsers of the flags whose values have a syntax of their own: published
//! ports (`-p 8081:80/udp`, as Docker spells them), labels (`--label k=v`),
//! attachments to keep during GC (`--keep container[/ifname]`), server
//! addresses (`--controller unix:/run/x.sock`), prefixes (`--prefix
//! 10.244.0.0/16`), BGP communities (`--community 65000:100`) and hold times
//! (`--hold-time 90`).
//!
//! They run as clap value parsers, so a bad spec is refused before any
//! connection is made, with a message naming the spec and what is wrong.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
pub use trellis_client::Address;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP, the default when a spec names none.
    Tcp,
    /// UDP.
    Udp,
}

/// One host port forwarded to one container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// TCP or UDP.
    pub protocol: Proto,
    /// The one host address to publish on; `None`: every address.
    pub host_ip: Option<IpAddr>,
    /// The port on the host, 1..=65535.
    pub host_port: u16,
    /// The port in the container, 1..=65535.
    pub container_port: u16,
}

/// One `-p` flag: a single mapping, or a range of them (`8000-8001:80-81`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish(pub Vec<PortSpec>);

/// Parses `[hostIP:]hostPort:containerPort[/tcp|udp]`, as Docker spells it:
/// either port may be a range `a-b` of the same length on both sides, and
/// an IPv6 host address goes in brackets (`[::1]:8080:80`).
///
/// Docker's form that the API cannot express is refused by name: a container
/// port alone (`80`, which Docker maps to a random host port).
pub fn publish(spec: &str) -> Result<Publish, String> {
    let bad = |why: &str| format!("publish spec {spec:?}: {why}");
    let (ports, protocol) = match spec.split_once('/') {
        Some((ports, proto)) => (ports, protocol(proto).map_err(|e| bad(&e))?),
        None => (spec, Proto::Tcp),
    };
    let (host_ip, ports) = host_address(ports).map_err(|e| bad(&e))?;
    let parts: Vec<&str> = ports.split(':').collect();
    let (host, container) = match parts.as_slice() {
        [host, container] => (*host, *container),
        [_] => return Err(bad("a host port is required ([IP:]HOST:CONTAINER[/PROTO])")),
        _ => {
            return Err(bad(
                "expected [IP:]HOST:CONTAINER[/PROTO] (IPv6 in brackets)",
            ));
        }
    };
    let host = port_range(host).map_err(|e| bad(&format!("host port {e}")))?;
    let container = port_range(container).map_err(|e| bad(&format!("container port {e}")))?;
    if host.len() != container.len() {
        return Err(bad(&format!(
            "host range has {} ports but container range has {}",
            host.len(),
            container.len()
        )));
    }
    let mappings = host
        .zip(container)
        .map(|(host_port, container_port)| PortSpec {
            protocol,
            host_ip,
            host_port,
            container_port,
        })
        .collect();
    Ok(Publish(mappings))
}

/// Splits a leading host address off `ports`: `[v6]:rest`, `v4:a:b`, or none.
fn host_address(ports: &str) -> Result<(Option<IpAddr>, &str), String> {
    if let Some(rest) = ports.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or("an IPv6 host address is written [ADDR]:HOST:CONTAINER")?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("host address {ip:?} is not an IP address"))?;
        return Ok((Some(ip), rest));
    }
    match ports.split(':').count() {
        3 => {
            let (ip, rest) = ports.split_once(':').expect("three parts");
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("host address {ip:?} is not an IPv4 address"))?;
            Ok((Some(ip), rest))
        }
        _ => Ok((None, ports)),
    }
}

fn protocol(text: &str) -> Result<Proto, String> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(format!("protocol {text:?} is not tcp or udp")),
    }
}

/// `80` or `8000-8010`; every port 1..=65535 and ranges not reversed.
fn port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => (port(text)?, port(text)?),
    };
    if lo > hi {
        return Err(format!("range {text:?} ends before it starts"));
    }
    Ok(lo..=hi)
}

fn port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    let n: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{text:?} is out of range 1..=65535"))
}

/// Parses `key=value`; the key must be non-empty, the value may be empty.
pub fn label(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some(("", _)) => Err(format!("label {spec:?}: the key is empty")),
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Err(format!("label {spec:?}: expected KEY=VALUE")),
    }
}

/// Collects labels into a map, refusing a key given twice with two values.
pub fn labels(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if let Some(old) = map.insert(k.clone(), v.clone())
            && old != *v
        {
            return Err(format!("label {k:?} given twice ({old:?} and {v:?})"));
        }
    }
    Ok(map)
}

/// An attachment named on the command line: a container and, optionally, one
/// of its interfaces (empty: the server's default, `eth0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    /// The container id.
    pub container_id: String,
    /// The interface in the container; empty for the server's default.
    pub ifname: String,
}

/// Parses `container[/ifname]`.
pub fn keep(spec: &str) -> Result<Keep, String> {
    let spec = spec.trim();
    let (container, ifname) = spec.split_once('/').unwrap_or((spec, ""));
    if container.is_empty() {
        return Err(format!("keep spec {spec:?}: the container id is empty"));
    }
    if spec.contains('/') && ifname.is_empty() {
        return Err(format!("keep spec {spec:?}: the interface name is empty"));
    }
    if ifname.contains('/') {
        return Err(format!(
            "keep spec {spec:?}: expected CONTAINER[/IFNAME], with one '/'"
        ));
    }
    Ok(Keep {
        container_id: container.to_owned(),
        ifname: ifname.to_owned(),
    })
}

/// Parses a keep file: one `container[/ifname]` per line; blank lines and
/// lines starting with `#` are skipped. Errors name the line.
pub fn keep_file(text: &str) -> Result<Vec<Keep>, String> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| keep(line).map_err(|e| format!("line {n}: {e}")))
        .collect()
}

/// Parses a server address (`--controller`): `unix:PATH`, `unix:///ABSOLUTE`,
/// a plain socket path, or an `http(s)://` URL, as [`Address`] spells them
/// for every trellis client.
pub fn address(spec: &str) -> Result<Address, String> {
    spec.parse()
        .map_err(|e: trellis_client::AddressError| e.to_string())
}

/// Parses a prefix in CIDR notation with its host bits zero
/// (`10.244.0.0/16`, `fd00:10:244::/56`), as pools and blocks are named.
pub fn prefix(spec: &str) -> Result<IpNet, String> {
    let net: IpNet = spec
        .parse()
        .map_err(|_| format!("prefix {spec:?} is not ADDRESS/LENGTH"))?;
    if net.trunc() != net {
        return Err(format!(
            "prefix {spec:?} has host bits set (the prefix is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses a block size: a prefix length, with or without its slash (`26`,
/// `/26`), 1..=128.
pub fn block_size(spec: &str) -> Result<u8, String> {
    let len = spec.strip_prefix('/').unwrap_or(spec);
    len.parse::<u8>()
        .ok()
        .filter(|n| (1..=128).contains(n))
        .ok_or_else(|| format!("block size {spec:?} is not a prefix length 1..=128"))
}

/// A BGP community (RFC 1997): the AS that defines it and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Community {
    /// The defining AS (the high 16 bits).
    pub asn: u16,
    /// The value (the low 16 bits).
    pub value: u16,
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.asn, self.value)
    }
}

/// Parses a community `ASN:VALUE`, each half 0..=65535 (`65000:100`).
pub fn community(spec: &str) -> Result<Community, String> {
    let bad = |why: &str| format!("community {spec:?}: {why}");
    let (asn, value) = spec
        .split_once(':')
        .ok_or_else(|| bad("expected ASN:VALUE, e.g. 65000:100"))?;
    let half = |text: &str| {
        text.parse::<u16>()
            .map_err(|_| bad(&format!("{text:?} is not a number 0..=65535")))
    };
    Ok(Community {
        asn: half(asn)?,
        value: half(value)?,
    })
}

/// Parses a BGP hold time in seconds: 0 (no keepalives, no hold timer) or
/// 3..=65535, as RFC 4271 §4.2 allows.
pub fn hold_time(spec: &str) -> Result<u16, String> {
    let secs: u16 = spec
        .parse()
        .map_err(|_| format!("hold time {spec:?} is not a number of seconds 0..=65535"))?;
    match secs {
        1 | 2 => Err(format!(
            "hold time {spec:?}: must be 0 or at least 3 seconds (RFC 4271)"
        )),
        s => Ok(s),
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
