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

/// Host port → container address:port, for one protocol (Docker's `-p 8081:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on the host's addresses, 1..=65535.
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

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.container_ip;
        let (h, c, p) = (self.host_port, self.container_port, self.protocol);
        match ip {
            IpAddr::V4(_) => write!(f, "{h}->{ip}:{c}/{p}"),
            IpAddr::V6(_) => write!(f, "{h}->[{ip}]:{c}/{p}"),
        }
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
    }
}
