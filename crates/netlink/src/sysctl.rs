//! Network sysctl keys, validated so that a key can never escape
//! `/proc/sys/net`, and written as a given namespace sees them (what
//! netlink cannot set: IPv6's per-interface `accept_ra` and `forwarding`,
//! `disable_ipv6`).

use crate::error::NetnsError;
use crate::sockets::Sockets;
use crate::spec::Ns;
use std::fmt;
use std::io;
use std::path::PathBuf;
use trellis_types::{IfName, InvalidInput};

/// A key under `/proc/sys/net`, in path form: `ipv4/conf/eth0/proxy_arp`.
///
/// Path form rather than dotted form because interface names may contain dots
/// (`eth0.100`), which the dotted form would turn into path separators.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SysctlKey(String);

impl SysctlKey {
    /// Validates `key` (relative, no `.`/`..` components, no empty component,
    /// no NUL), reporting errors against `field`.
    pub fn parse(field: &'static str, key: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: &str| Err(InvalidInput::new(field, key, reason));
        if key.is_empty() {
            return bad("sysctl key is empty");
        }
        if key.contains('\0') {
            return bad("sysctl key contains NUL");
        }
        if key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return bad(
                "sysctl key must be a relative path under /proc/sys/net without . or .. or empty components",
            );
        }
        Ok(Self(key.to_owned()))
    }

    /// `ipv4/conf/<ifname>/<knob>` (`proxy_arp`, `forwarding`, `rp_filter`, …).
    pub fn ipv4_conf(ifname: &IfName, knob: &str) -> Result<Self, InvalidInput> {
        Self::parse("sysctl", &format!("ipv4/conf/{ifname}/{knob}"))
    }

    /// `ipv6/conf/<ifname>/<knob>` (`disable_ipv6`, `accept_ra`, `proxy_ndp`, …).
    pub fn ipv6_conf(ifname: &IfName, knob: &str) -> Result<Self, InvalidInput> {
        Self::parse("sysctl", &format!("ipv6/conf/{ifname}/{knob}"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file to write: `/proc/sys/net/<key>`. Which namespace it belongs to
    /// is decided by the netns of the thread that opens it.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from("/proc/sys/net").join(&self.0)
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net/{}", self.0)
    }
}

impl Sockets {
    /// Writes `writes` in order under `/proc/sys/net` as seen from `ns`, in
    /// one go: on the calling thread for the process's own namespace, else on
    /// one namespace thread for all of them. Stops at the first failure,
    /// which names its key.
    pub async fn write_sysctls(
        &self,
        ns: &Ns,
        writes: Vec<(SysctlKey, String)>,
    ) -> Result<(), NetnsError> {
        if writes.is_empty() {
            return Ok(());
        }
        let subject = match writes.as_slice() {
            [(key, _)] => format!("{key} in {ns}"),
            _ => ns.to_string(),
        };
        self.run_here_or_in(ns, "write sysctl", move || {
            writes.iter().try_for_each(|(key, value)| {
                std::fs::write(key.proc_path(), value)
                    .map_err(|e| io::Error::new(e.kind(), format!("{key}: {e}")))
            })
        })
        .await
        .map_err(|e| match e {
            NetnsError::Io { op, source, .. } => NetnsError::Io {
                op,
                subject,
                source,
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_proc_sys_net() {
        for bad in [
            "",
            "/ipv4/ip_forward",
            "ipv4/../../kernel/x",
            "ipv4//x",
            "./x",
            "x\0",
        ] {
            let e = SysctlKey::parse("sysctl", bad).unwrap_err();
            assert_eq!(e.field, "sysctl", "{bad:?}");
        }
        let ifn = IfName::parse("ifname", "eth0.100").unwrap();
        let k = SysctlKey::ipv4_conf(&ifn, "proxy_arp").unwrap();
        assert_eq!(
            k.proc_path(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/proxy_arp")
        );
    }
}
