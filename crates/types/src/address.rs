//! Where a node's Agent API is reached over TCP: the address a node
//! registers with the controller, and the controller dials to read it.
//!
//! Kept to what a gRPC channel needs and a certificate can name: a scheme
//! (`https`, or `http` for labs), a host (an IP address, IPv6 in brackets,
//! or a DNS name) and a port; no path, user or query, which the channel
//! would ignore or misread. It is a store value (in the node's record), so
//! it is checked when it is read back too.

use crate::InvalidInput;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A node's Agent API address: `https://HOST:PORT` (mutual TLS) or
/// `http://HOST:PORT` (plaintext, labs), e.g. `https://10.1.253.101:7444`,
/// `https://[fd00::1]:7444`, `https://node1.example:7444`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentAddress(String);

impl AgentAddress {
    /// The longest address accepted (a DNS name's 253 bytes, a port, a scheme).
    pub const MAX_LEN: usize = 270;

    /// Validates `s` as an Agent API address, reporting errors against `field`.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: &str| Err(InvalidInput::new(field, s, reason));
        if s.len() > Self::MAX_LEN {
            return bad("an Agent API address is at most 270 bytes");
        }
        let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        else {
            return bad("expected https://HOST:PORT (or http://HOST:PORT)");
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return bad("a port is required: https://HOST:PORT");
        };
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('+') => {}
            _ => return bad("the port must be 1 to 65535, and nothing may follow it"),
        }
        let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<Ipv6Addr>().is_ok()
        } else {
            host.parse::<std::net::Ipv4Addr>().is_ok() || dns_name(host)
        };
        if !host_ok {
            return bad(
                "the host must be an IPv4 address, an IPv6 address in brackets or a DNS name",
            );
        }
        Ok(Self(s.to_owned()))
    }

    /// The address of a server at `addr`: `https://` when `tls`, else
    /// `http://` (an IPv6 address in brackets).
    pub fn of(tls: bool, addr: SocketAddr) -> Self {
        let scheme = if tls { "https" } else { "http" };
        Self(format!("{scheme}://{addr}"))
    }

    /// Whether it is reached with TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("https://")
    }
}

/// Whether `host` is a DNS name: dot-separated labels of 1..=63 letters,
/// digits and hyphens, not starting or ending with a hyphen, 253 bytes at
/// most, and not all digits and dots (an IPv4 address that failed to parse).
fn dns_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label_ok)
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

crate::scoped::text_name!(AgentAddress, "agent_address");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_every_host_kind_parse() {
        for ok in [
            "https://10.1.253.101:7444",
            "http://127.0.0.1:1",
            "https://[fd00::1]:7444",
            "https://[::1]:65535",
            "https://node1:7444",
            "https://node-1.example.org:7444",
        ] {
            let a: AgentAddress = ok.parse().unwrap();
            assert_eq!(a.as_str(), ok);
            assert_eq!(a.is_tls(), ok.starts_with("https"));
        }
    }

    #[test]
    fn anything_a_channel_would_misread_is_refused() {
        for bad in [
            "",
            "10.0.0.1:7444",
            "grpc://10.0.0.1:7444",
            "https://10.0.0.1",
            "https://10.0.0.1:",
            "https://10.0.0.1:0",
            "https://10.0.0.1:70000",
            "https://10.0.0.1:+80",
            "https://10.0.0.1:7444/path",
            "https://user@10.0.0.1:7444",
            "https://fd00::1:7444",
            "https://[fd00::zz]:7444",
            "https://10.0.0.300:7444",
            "https://-node:7444",
            "https://no_underscores:7444",
            "https://:7444",
        ] {
            let e = AgentAddress::parse("agent_address", bad).unwrap_err();
            assert_eq!((e.field, e.value.as_str()), ("agent_address", bad));
        }
        let long = format!("https://{}:1", "a".repeat(300));
        assert!(long.parse::<AgentAddress>().is_err());
    }

    #[test]
    fn a_server_address_becomes_an_agent_address() {
        let v4: SocketAddr = "10.0.0.1:7444".parse().unwrap();
        assert_eq!(AgentAddress::of(true, v4).as_str(), "https://10.0.0.1:7444");
        let v6: SocketAddr = "[fd00::1]:7444".parse().unwrap();
        let a = AgentAddress::of(false, v6);
        assert_eq!(a.as_str(), "http://[fd00::1]:7444");
        assert_eq!(a.as_str().parse::<AgentAddress>().unwrap(), a);
    }

    #[test]
    fn serde_checks_what_it_reads() {
        let a: AgentAddress = serde_json::from_str("\"https://h1:7444\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"https://h1:7444\"");
        assert!(serde_json::from_str::<AgentAddress>("\"h1:7444\"").is_err());
    }
}
