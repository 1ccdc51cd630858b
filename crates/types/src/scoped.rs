//! Names that scope records in the store: nodes, networks, IPAM pools.
//!
//! Each of these becomes one segment of a store key (`nodes/<node>/…`,
//! `ipam/blocks/<pool>/…`) or is compared with one (a block's affinity
//! host). Store prefixes select subtrees by `/`-separated segment, so a `/`
//! inside a name would silently widen or move what a key or a listing
//! means; the charsets below leave it out, and parsing once here means no
//! crate has to re-check a name before it builds a key from it.
//!
//! Each type reads like a std type: [`FromStr`] and [`TryFrom<String>`]
//! (reporting errors against the field name the type usually fills),
//! [`Display`](fmt::Display), [`AsRef<str>`], [`Borrow<str>`] (so a map
//! keyed by the name can be looked up with a `&str`), and serde as a plain
//! string that is validated again when deserialised.

use crate::InvalidInput;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The traits every name here shares, over its `parse(field, s)`; `field`
/// is the name errors report when none is given (`FromStr`, serde).
macro_rules! text_name {
    ($ty:ident, $field:literal) => {
        impl $ty {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                Self::parse($field, s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = InvalidInput;
            fn try_from(s: String) -> Result<Self, InvalidInput> {
                Self::parse($field, &s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

pub(crate) use text_name;

/// The first character of `s` outside `[A-Za-z0-9_.-]`, if any.
fn bad_char(s: &str) -> Option<char> {
    s.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
}

/// A node's name, as it appears in node-scoped store keys (`nodes/<node>/…`)
/// and as the affinity host of IPAM blocks: 1..=63 bytes of
/// `[A-Za-z0-9_.-]`, not `.` or `..`.
///
/// The host name is the usual source (trellisd reads
/// `/proc/sys/kernel/hostname` unless given `--node`): a host name of RFC
/// 1123 letters, digits, hyphens and dots parses, short or fully qualified,
/// as long as it is at most 63 bytes — the limit trellisd has always
/// applied to node names. `_` is allowed because `--node` has always
/// allowed it; `.` and `..` are refused because as a key segment they read
/// as a path step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// The longest name accepted (one DNS label).
    pub const MAX_LEN: usize = 63;

    /// Validates `name` as a node name, reporting errors against `field`.
    pub fn parse(field: &'static str, name: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: String| Err(InvalidInput::new(field, name, reason));
        if name.is_empty() {
            return bad("node name is empty".into());
        }
        if name.len() > Self::MAX_LEN {
            return bad(format!("node name is longer than {} bytes", Self::MAX_LEN));
        }
        if let Some(c) = bad_char(name) {
            return bad(format!(
                "node name may only hold [A-Za-z0-9_.-], found {c:?}"
            ));
        }
        if name == "." || name == ".." {
            return bad("node name may not be \".\" or \"..\"".into());
        }
        Ok(Self(name.to_owned()))
    }
}

text_name!(NodeName, "node");

/// A network's name: 1..=60 bytes of `[A-Za-z0-9_.-]`.
///
/// 60, not 63, so that the network's pool names (`<network>.v4`,
/// `<network>.v6`, see [`PoolName::of`]) still fit a pool name's 63 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkName(String);

impl NetworkName {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 60;

    /// Validates `name` as a network name, reporting errors against `field`.
    pub fn parse(field: &'static str, name: &str) -> Result<Self, InvalidInput> {
        if name.is_empty() || name.len() > Self::MAX_LEN || bad_char(name).is_some() {
            return Err(InvalidInput::new(
                field,
                name,
                "network name must be 1 to 60 bytes of [A-Za-z0-9_.-]",
            ));
        }
        Ok(Self(name.to_owned()))
    }
}

text_name!(NetworkName, "network");

/// An address family: which of a network's two pools an address or subnet
/// belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl From<IpAddr> for IpFamily {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl From<IpNet> for IpFamily {
    fn from(net: IpNet) -> Self {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }
}

/// An IPAM pool's name: 1..=63 bytes of `[A-Za-z0-9_.-]`.
///
/// A network's pools are named after it, one per family
/// ([`PoolName::of`]); pools created directly through IPAM may be named
/// anything that fits the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolName(String);

impl PoolName {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 63;

    /// Validates `name` as a pool name, reporting errors against `field`.
    pub fn parse(field: &'static str, name: &str) -> Result<Self, InvalidInput> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(InvalidInput::new(
                field,
                name,
                "pool name must be 1 to 63 bytes long",
            ));
        }
        if let Some(c) = bad_char(name) {
            let reason = format!("pool name may only hold [A-Za-z0-9_.-], found {c:?}");
            return Err(InvalidInput::new(field, name, reason));
        }
        Ok(Self(name.to_owned()))
    }

    /// The pool of `network` for `family`: `<network>.v4` or `<network>.v6`.
    /// `family` may be given as an address or a subnet of that family.
    /// Cannot fail: a network name is at most 60 bytes of the same charset.
    pub fn of(network: &NetworkName, family: impl Into<IpFamily>) -> Self {
        let suffix = match family.into() {
            IpFamily::V4 => "v4",
            IpFamily::V6 => "v6",
        };
        Self(format!("{network}.{suffix}"))
    }
}

text_name!(PoolName, "pool");

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn host_names_parse_as_node_names() {
        for name in [
            "worker-1",
            "node_7.LAB",
            "ip-10-0-0-12.eu-west-1.compute.internal",
            "a",
            &"n".repeat(63),
        ] {
            let node = NodeName::parse("node", name).unwrap();
            assert_eq!(node.as_str(), name);
            assert_eq!(node.to_string(), name);
        }
    }

    #[test]
    fn bad_node_names_are_refused_naming_field_value_and_rule() {
        for (bad, reason) in [
            ("", "node name is empty"),
            (&"n".repeat(64), "node name is longer than 63 bytes"),
            (".", "node name may not be \".\" or \"..\""),
            ("..", "node name may not be \".\" or \"..\""),
            ("a/b", "node name may only hold [A-Za-z0-9_.-], found '/'"),
            ("a b", "node name may only hold [A-Za-z0-9_.-], found ' '"),
            ("höst", "node name may only hold [A-Za-z0-9_.-], found 'ö'"),
        ] {
            let err = NodeName::parse("node", bad).unwrap_err();
            assert_eq!(
                (err.field, err.value.as_str(), err.reason.as_str()),
                ("node", bad, reason)
            );
        }
        let err = "a/b".parse::<NodeName>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "node \"a/b\": node name may only hold [A-Za-z0-9_.-], found '/'"
        );
    }

    #[test]
    fn network_names_keep_the_agents_rule() {
        for good in ["n", "net_1.a-b", &"n".repeat(60), "."] {
            assert_eq!(NetworkName::parse("name", good).unwrap().as_str(), good);
        }
        for bad in ["", &"n".repeat(61), "a/b", "a:b", "ünï"] {
            let err = NetworkName::parse("name", bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("name {bad:?}: network name must be 1 to 60 bytes of [A-Za-z0-9_.-]")
            );
        }
    }

    #[test]
    fn pool_names_keep_ipams_rule() {
        for good in ["p", "n.v4", &"p".repeat(63)] {
            assert_eq!(PoolName::parse("pool", good).unwrap().as_str(), good);
        }
        let long = PoolName::parse("pool", &"p".repeat(64)).unwrap_err();
        assert_eq!(long.reason, "pool name must be 1 to 63 bytes long");
        assert_eq!(
            PoolName::parse("pool", "").unwrap_err().reason,
            "pool name must be 1 to 63 bytes long"
        );
        let slash = PoolName::parse("name", "a/b").unwrap_err();
        assert_eq!(
            (slash.field, slash.value.as_str(), slash.reason.as_str()),
            (
                "name",
                "a/b",
                "pool name may only hold [A-Za-z0-9_.-], found '/'"
            )
        );
    }

    #[test]
    fn a_networks_pools_are_named_after_it_and_always_valid() {
        let net = NetworkName::parse("name", "blue").unwrap();
        let v4: IpNet = "10.0.0.0/24".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(PoolName::of(&net, v4).as_str(), "blue.v4");
        assert_eq!(PoolName::of(&net, v6).as_str(), "blue.v6");
        assert_eq!(PoolName::of(&net, IpFamily::V6).as_str(), "blue.v6");

        let longest = NetworkName::parse("name", &"n".repeat(60)).unwrap();
        let pool = PoolName::of(&longest, IpFamily::V4);
        assert_eq!(
            PoolName::parse("pool", pool.as_str()),
            Ok(pool),
            "the longest network's pool is a valid pool name"
        );
    }

    #[test]
    fn serde_is_a_plain_string_validated_on_the_way_in() {
        let node: NodeName = serde_json::from_str("\"worker-1\"").unwrap();
        assert_eq!(serde_json::to_string(&node).unwrap(), "\"worker-1\"");
        let net: NetworkName = serde_json::from_str("\"blue\"").unwrap();
        assert_eq!(serde_json::to_string(&net).unwrap(), "\"blue\"");
        let pool: PoolName = serde_json::from_str("\"blue.v6\"").unwrap();
        assert_eq!(serde_json::to_string(&pool).unwrap(), "\"blue.v6\"");

        let err = serde_json::from_str::<NodeName>("\"..\"").unwrap_err();
        assert!(err.to_string().contains("node \"..\""), "{err}");
        let err = serde_json::from_str::<NetworkName>("\"\"").unwrap_err();
        assert!(err.to_string().contains("network name must be"), "{err}");
        let err = serde_json::from_str::<PoolName>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("pool \"a/b\""), "{err}");
    }

    #[test]
    fn names_convert_like_strings() {
        let pool: PoolName = "blue.v4".parse().unwrap();
        let by_pool = HashMap::from([(pool.clone(), 1)]);
        assert_eq!(by_pool.get("blue.v4"), Some(&1), "looked up by &str");
        assert_eq!(String::from(pool.clone()), "blue.v4");
        assert_eq!(PoolName::try_from("blue.v4".to_owned()), Ok(pool));
        let err = NodeName::try_from(String::new()).unwrap_err();
        assert_eq!(err.field, "node");
        let mut nodes: Vec<NodeName> = ["b", "a"].iter().map(|n| n.parse().unwrap()).collect();
        nodes.sort();
        assert_eq!(nodes[0].as_ref(), "a");
    }
}
