//! The host-wide forwarding switches, and keeping router advertisements
//! where the host relies on them.
//!
//! `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding` are what a
//! container network needs to reach anything off the host (Docker sets the
//! first for every bridge network; trellis sets each for the families its
//! networks use). Writing them also sets every interface's and the
//! `default` devconf, so later interfaces start with forwarding on.
//!
//! IPv6 has a trap: with `forwarding=1` the kernel ignores router
//! advertisements on an interface whose `accept_ra` is 1 (`ipv6_accept_ra`:
//! a router does not autoconfigure), so a host that takes its IPv6 address
//! or default route from RAs would lose them when the first IPv6 network is
//! created. So, only when IPv6 forwarding is still off, every interface with
//! `accept_ra=1` gets `accept_ra=2` ("accept even when forwarding") first,
//! as Docker does. trellis's own interfaces are left out (host veths, and
//! the bridges the caller names): a bridge that accepted RAs would take a
//! default route from any container. Nothing is undone when networks go:
//! as with Docker, forwarding stays on (other software may rely on it by
//! then, and turning it off would cut it off).

use crate::naming::is_host_veth_name;
use std::io;
use trellis_netlink::{Families, SysctlKey};
use trellis_types::IfName;

/// The devconf directories that are not interfaces.
const NOT_INTERFACES: [&str; 3] = ["all", "default", "lo"];

/// The `accept_ra` keys to raise from 1 to 2 before IPv6 forwarding goes on:
/// none when it is on already (`all_forwarding` is not `0`), else those of
/// `interfaces` (name, current `accept_ra`) that read 1, except trellis's.
pub fn keep_ra_keys(
    all_forwarding: &str,
    interfaces: &[(String, String)],
    own_bridges: &[IfName],
) -> Vec<SysctlKey> {
    if all_forwarding.trim() != "0" {
        return Vec::new();
    }
    interfaces
        .iter()
        .filter(|(_, ra)| ra.trim() == "1")
        .filter(|(name, _)| !NOT_INTERFACES.contains(&name.as_str()))
        .filter(|(name, _)| !is_host_veth_name(name))
        .filter(|(name, _)| !own_bridges.iter().any(|b| b.as_str() == name))
        .filter_map(|(name, _)| {
            SysctlKey::parse("sysctl", &format!("ipv6/conf/{name}/accept_ra")).ok()
        })
        .collect()
}

fn read(key: &str) -> io::Result<String> {
    let path = format!("/proc/sys/net/{key}");
    std::fs::read_to_string(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn write(key: &SysctlKey, value: &str) -> io::Result<()> {
    std::fs::write(key.proc_path(), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{key}: {e}")))
}

/// Every interface's `accept_ra`, as this thread's namespace shows them.
fn accept_ras() -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/sys/net/ipv6/conf")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // An interface removed meanwhile has nothing to keep.
        if let Ok(ra) = read(&format!("ipv6/conf/{name}/accept_ra")) {
            out.push((name, ra));
        }
    }
    Ok(out)
}

/// Turns forwarding on for `families` in the calling thread's namespace,
/// keeping RAs accepted (see the module docs). Blocking; a few file writes.
pub(crate) fn enable(families: Families, own_bridges: &[IfName]) -> io::Result<()> {
    if families.v4 {
        write(
            &SysctlKey::parse("sysctl", "ipv4/ip_forward").expect("valid"),
            "1",
        )?;
    }
    if families.v6 {
        // No IPv6 at all (ipv6.disable=1): nothing to forward, nothing to do.
        let Ok(all) = read("ipv6/conf/all/forwarding") else {
            return Ok(());
        };
        for key in keep_ra_keys(&all, &accept_ras()?, own_bridges) {
            write(&key, "2")?;
        }
        let all_key = SysctlKey::parse("sysctl", "ipv6/conf/all/forwarding").expect("valid");
        write(&all_key, "1")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifaces(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(n, r)| (n.to_string(), format!("{r}\n")))
            .collect()
    }

    #[test]
    fn only_interfaces_taking_ras_are_raised_and_only_while_forwarding_is_off() {
        let seen = ifaces(&[
            ("all", "1"),
            ("default", "1"),
            ("lo", "1"),
            ("eth0", "1"),
            ("eth1", "0"),
            ("wlan0", "2"),
            ("tr0123456789abc", "1"),
            ("trellis0", "1"),
            ("eth0.100", "1"),
        ]);
        let own = [IfName::parse("bridge", "trellis0").unwrap()];
        let keys: Vec<String> = keep_ra_keys("0\n", &seen, &own)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            keys,
            [
                "net/ipv6/conf/eth0/accept_ra",
                "net/ipv6/conf/eth0.100/accept_ra"
            ]
        );
        assert!(keep_ra_keys("1\n", &seen, &own).is_empty());
    }
}
