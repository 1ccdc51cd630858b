//! Names: interface names, container ids, netns paths, allocation handles.

use crate::InvalidInput;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// A Linux interface name: 1..=15 bytes (IFNAMSIZ - 1), no `/`, no whitespace,
/// not `.` or `..` (the kernel's `dev_valid_name`), and no `:` (alias syntax).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    /// The longest name the kernel accepts (IFNAMSIZ is 16 with the NUL).
    pub const MAX_LEN: usize = 15;

    /// Validates `name` as an interface name, reporting errors against `field`.
    pub fn parse(field: &'static str, name: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: &str| Err(InvalidInput::new(field, name, reason));
        if name.is_empty() {
            return bad("interface name is empty");
        }
        if name.len() > Self::MAX_LEN {
            return bad("interface name is longer than 15 bytes");
        }
        if name == "." || name == ".." {
            return bad("interface name may not be \".\" or \"..\"");
        }
        if name.contains('/') {
            return bad("interface name may not contain '/'");
        }
        if name.contains(':') {
            return bad("interface name may not contain ':'");
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("interface name may not contain whitespace or control characters");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Refuses, as the name of an interface to create, a name that the kernel
    /// or the system keeps for itself: `lo`, the loopback of every namespace;
    /// `all` and `default`, which the kernel refuses (they name the per-family
    /// configuration directories, `/proc/sys/net/ipv4/conf/all`); and
    /// `bonding_masters`, the bonding driver's control file in
    /// `/sys/class/net`. Other names are checked against what exists by the
    /// kernel itself.
    pub fn check_creatable(&self, field: &'static str) -> Result<(), InvalidInput> {
        let why = match self.0.as_str() {
            "lo" => "is the loopback interface of every network namespace",
            "all" | "default" => {
                "is reserved by the kernel (it names the per-family settings in /proc/sys/net/*/conf)"
            }
            "bonding_masters" => {
                "is reserved by the bonding driver (/sys/class/net/bonding_masters)"
            }
            _ => return Ok(()),
        };
        Err(InvalidInput::new(
            field,
            &self.0,
            format!("interface name {why}"),
        ))
    }
}

impl TryFrom<String> for IfName {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Self::parse("ifname", &s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A container id as the runtime gives it: 1..=128 bytes of `[A-Za-z0-9_.-]`.
/// (Docker and podman use 64 hex digits; CNI allows any such string.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 128;

    /// Validates `id`, reporting errors against `field`.
    pub fn parse(field: &'static str, id: &str) -> Result<Self, InvalidInput> {
        if id.is_empty() {
            return Err(InvalidInput::new(field, id, "container id is empty"));
        }
        if id.len() > Self::MAX_LEN {
            return Err(InvalidInput::new(
                field,
                id,
                format!("container id is longer than {} bytes", Self::MAX_LEN),
            ));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(InvalidInput::new(
                field,
                id,
                format!("container id may only hold [A-Za-z0-9_.-], found {c:?}"),
            ));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContainerId {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Self::parse("container_id", &s)
    }
}

impl From<ContainerId> for String {
    fn from(n: ContainerId) -> String {
        n.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The path of a network namespace (`/run/netns/x`, `/proc/<pid>/ns/net`).
///
/// Parsing checks only the shape (absolute, no NUL); whether the path really is
/// a network namespace is checked by `trellis-link` when it opens it, because
/// that needs the file system and must be checked at the moment of use anyway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetnsPath(PathBuf);

impl NetnsPath {
    /// Validates the shape of `path`, reporting errors against `field`.
    pub fn parse(field: &'static str, path: &str) -> Result<Self, InvalidInput> {
        if path.is_empty() {
            return Err(InvalidInput::new(field, path, "netns path is empty"));
        }
        if !path.starts_with('/') {
            return Err(InvalidInput::new(
                field,
                path,
                "netns path must be absolute",
            ));
        }
        if path.contains('\0') {
            return Err(InvalidInput::new(field, path, "netns path contains NUL"));
        }
        if path.len() > 4096 {
            return Err(InvalidInput::new(
                field,
                path,
                "netns path is longer than 4096 bytes",
            ));
        }
        Ok(Self(PathBuf::from(path)))
    }

    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<String> for NetnsPath {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Self::parse("netns", &s)
    }
}

impl From<NetnsPath> for String {
    fn from(n: NetnsPath) -> String {
        n.0.to_string_lossy().into_owned()
    }
}

impl fmt::Display for NetnsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// What an address is allocated under: one container's one interface. Releasing
/// by handle is how a CNI DEL or a Detach frees exactly what its ADD took.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Handle {
    /// The container.
    pub container: ContainerId,
    /// The interface inside it.
    pub ifname: IfName,
}

impl Handle {
    /// A handle for `container`'s interface `ifname`.
    pub fn new(container: ContainerId, ifname: IfName) -> Self {
        Self { container, ifname }
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container, self.ifname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(IfName::parse("ifname", "eth0").is_ok());
        assert!(IfName::parse("ifname", "a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            "a/b",
            "a b",
            "a\tb",
            ".",
            "..",
            "eth0:1",
        ] {
            let err = IfName::parse("ifname", bad).unwrap_err();
            assert_eq!(err.field, "ifname", "{bad:?}");
            assert_eq!(err.value, bad);
        }
        let long = IfName::parse("ifname", "eth0-too-long-name").unwrap_err();
        assert_eq!(
            long.to_string(),
            "ifname \"eth0-too-long-name\": interface name is longer than 15 bytes"
        );
    }

    #[test]
    fn reserved_names_cannot_be_created() {
        for name in ["lo", "all", "default", "bonding_masters"] {
            let n = IfName::parse("ifname", name).unwrap();
            let e = n.check_creatable("bridge").unwrap_err();
            assert_eq!((e.field, e.value.as_str()), ("bridge", name));
        }
        for name in ["eth0", "lo0", "trellis0", "alls"] {
            let n = IfName::parse("ifname", name).unwrap();
            assert!(n.check_creatable("ifname").is_ok(), "{name}");
        }
    }

    #[test]
    fn container_id_rules() {
        assert!(ContainerId::parse("container_id", &"a".repeat(64)).is_ok());
        assert!(ContainerId::parse("container_id", "").is_err());
        assert!(ContainerId::parse("container_id", &"a".repeat(129)).is_err());
        assert!(ContainerId::parse("container_id", "a/b").is_err());
    }

    #[test]
    fn netns_path_rules() {
        assert!(NetnsPath::parse("netns", "/run/netns/x").is_ok());
        assert!(NetnsPath::parse("netns", "run/netns/x").is_err());
        assert!(NetnsPath::parse("netns", "").is_err());
    }

    #[test]
    fn serde_validates() {
        let err = serde_json::from_str::<IfName>("\"a/b\"");
        assert!(err.is_err());
    }
}
