//! Published ports.

use crate::InvalidInput;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// A transport protocol a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number, as nftables' `meta l4proto` sees it.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// Parses `tcp` or `udp` (any case), reporting errors against `field`.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InvalidInput> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(InvalidInput::new(field, s, "protocol must be tcp or udp")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Host port → container address:port, for one protocol (Docker's `-p 8081:80`,
/// or `-p 127.0.0.1:8081:80` with a host address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The one host address the port is published on; `None` publishes it on
    /// every address of the host. Of the container address's family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// The port on the host's addresses (or on `host_ip`), 1..=65535.
    pub host_port: u16,
    /// The container's address the traffic is forwarded to.
    pub container_ip: IpAddr,
    /// The port inside the container, 1..=65535.
    pub container_port: u16,
}

impl PortMapping {
    /// Validates ports that arrive as wider integers (gRPC has no `u16`), so that
    /// 0 and 70000 are refused with the field named instead of being truncated.
    pub fn new(
        protocol: Protocol,
        host_port: u32,
        container_ip: IpAddr,
        container_port: u32,
    ) -> Result<Self, InvalidInput> {
        Ok(Self {
            protocol,
            host_ip: None,
            host_port: port("host_port", host_port)?,
            container_ip,
            container_port: port("container_port", container_port)?,
        })
    }
}

fn port(field: &'static str, value: u32) -> Result<u16, InvalidInput> {
    match u16::try_from(value) {
        Ok(0) => Err(InvalidInput::new(
            field,
            value,
            "port 0 cannot be published",
        )),
        Ok(p) => Ok(p),
        Err(_) => Err(InvalidInput::new(field, value, "port is above 65535")),
    }
}

impl PortMapping {
    /// Publishes the mapping on `host_ip` only (`None`: every host address).
    pub fn on(self, host_ip: Option<IpAddr>) -> Self {
        Self { host_ip, ..self }
    }

    /// Whether two mappings claim the same host port: same protocol and port,
    /// and the same host address or either on every address.
    pub fn clashes_with(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

/// `ip:port`, with IPv6 addresses in brackets.
pub(crate) struct Sock(pub IpAddr, pub u16);

impl fmt::Display for Sock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.1),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.1),
        }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, p) = (self.container_port, self.protocol);
        match self.host_ip {
            Some(h) => write!(f, "{}", Sock(h, self.host_port))?,
            None => write!(f, "{}", self.host_port)?,
        }
        write!(f, "->{}/{p}", Sock(self.container_ip, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_out_of_range_are_refused_with_the_field_named() {
        let ip = "10.0.0.2".parse().unwrap();
        let e = PortMapping::new(Protocol::Tcp, 0, ip, 80).unwrap_err();
        assert_eq!(e.field, "host_port");
        let e = PortMapping::new(Protocol::Udp, 8080, ip, 70000).unwrap_err();
        assert_eq!(e.field, "container_port");
        assert_eq!(e.value, "70000");
        let ok = PortMapping::new(Protocol::Tcp, 8081, ip, 80).unwrap();
        assert_eq!(ok.to_string(), "8081->10.0.0.2:80/tcp");
        let local = ok.on(Some("127.0.0.1".parse().unwrap()));
        assert_eq!(local.to_string(), "127.0.0.1:8081->10.0.0.2:80/tcp");
        let v6 = PortMapping::new(Protocol::Tcp, 80, "fd00::2".parse().unwrap(), 8080).unwrap();
        let v6 = v6.on(Some("2001:db8::1".parse().unwrap()));
        assert_eq!(v6.to_string(), "[2001:db8::1]:80->[fd00::2]:8080/tcp");
    }

    #[test]
    fn a_port_on_every_address_clashes_with_the_same_port_on_one_address() {
        let ip = "10.0.0.2".parse().unwrap();
        let any = PortMapping::new(Protocol::Tcp, 8080, ip, 80).unwrap();
        let lo = any.on(Some("127.0.0.1".parse().unwrap()));
        let other = any.on(Some("10.1.253.101".parse().unwrap()));
        assert!(any.clashes_with(&lo) && lo.clashes_with(&any));
        assert!(any.clashes_with(&any) && lo.clashes_with(&lo));
        assert!(!lo.clashes_with(&other), "two host addresses share a port");
        let udp = PortMapping::new(Protocol::Udp, 8080, ip, 80).unwrap();
        assert!(!any.clashes_with(&udp));
    }
}
