//! Validated newtypes shared by every trellis crate.
//!
//! Design decision: input is validated once, at the edge, by constructing one of
//! these types. Past that point no crate re-checks an interface name or a netns
//! path, and no bare `String`/`u16` crosses a crate boundary for these roles. Each
//! constructor returns [`InvalidInput`], which names the field and the value, so
//! the gRPC edge can map it to `INVALID_ARGUMENT` without guessing.
//!
//! Design decision: names that become a segment of a store key
//! ([`NodeName`], [`NetworkName`], [`PoolName`]) are types of their own, not
//! strings checked where a key is built. A store prefix selects a subtree by
//! `/`-separated segment, so a name that slipped through unchecked could make
//! a key or a listing mean another subtree; with the type, a function that
//! takes a `PoolName` cannot be handed one that was never checked, and each
//! rule lives in one place. These names parse with `str::parse` and
//! deserialise from plain strings, validated either way.

mod address;
mod error_class;
mod mac;
mod names;
mod ports;
mod scoped;

pub use address::AgentAddress;
pub use error_class::ErrorClass;
pub use mac::MacAddr;
pub use names::{ContainerId, Handle, IfName, NetnsPath};
pub use ports::{PortMapping, Protocol};
pub use scoped::{IpFamily, NetworkName, NodeName, PoolName};

use std::fmt;

/// Bad input: which field, what value, and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?}: {reason}")]
pub struct InvalidInput {
    /// The name of the field as the caller spelled it (`ifname`, `host_port`, …).
    pub field: &'static str,
    /// The offending value, rendered as text.
    pub value: String,
    /// Why it was refused, lowercase, without a trailing period.
    pub reason: String,
}

impl InvalidInput {
    /// Builds an error for `field` holding `value`.
    pub fn new(field: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Checks that a prefix has no host bits set (`10.0.0.1/24` is refused; it is
/// almost always a typo for `10.0.0.0/24` and silently truncating it hides that).
pub fn check_prefix(field: &'static str, net: ipnet::IpNet) -> Result<ipnet::IpNet, InvalidInput> {
    if net.trunc() != net {
        return Err(InvalidInput::new(
            field,
            net,
            format!("host bits are set (did you mean {}?)", net.trunc()),
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_with_host_bits_is_refused_and_names_the_field() {
        let err = check_prefix("subnet", "10.1.2.3/24".parse().unwrap()).unwrap_err();
        assert_eq!(err.field, "subnet");
        assert!(err.to_string().contains("10.1.2.0/24"), "{err}");
        assert!(check_prefix("subnet", "10.1.2.0/24".parse().unwrap()).is_ok());
    }
}
