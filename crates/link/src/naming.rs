//! Deterministic names and MACs.
//!
//! The host end of a container's veth is named `tr` + 13 hex digits of a hash
//! of (container id, interface name): 15 bytes, the kernel's limit. It is a
//! pure function of the attachment, so a retried attach, a detach after a
//! daemon restart and a leak check all find the same name without a lookup.
//! 52 bits of hash make a collision among a host's containers vanishingly
//! unlikely (≈ n²/2⁵³). The hash is FNV-1a with a splitmix64 finaliser: tiny,
//! stable across Rust releases (unlike `DefaultHasher`), and well mixed.

use trellis_netlink::Mac;
use trellis_types::{ContainerId, IfName};

/// Prefix of every host-side veth trellis creates.
pub const HOST_VETH_PREFIX: &str = "tr";
const HASH_DIGITS: usize = IfName::MAX_LEN - HOST_VETH_PREFIX.len();

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser: spreads FNV's weak low bits over the whole word.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The host-side veth name for `container`'s interface `ifname`:
/// `tr` + 13 lowercase hex digits, always exactly 15 bytes.
pub fn host_veth_name(container: &ContainerId, ifname: &IfName) -> IfName {
    let h = fnv1a(&[container.as_str().as_bytes(), ifname.as_str().as_bytes()]);
    let hex = format!("{h:016x}");
    let name = format!("{HOST_VETH_PREFIX}{}", &hex[..HASH_DIGITS]);
    IfName::parse("host_ifname", &name).expect("tr + 13 hex digits is a valid interface name")
}

/// Prefix of a retired link: a veth taken out of the way by
/// [`crate::Links::retire_veth`], waiting for its batched deletion.
pub const RETIRED_PREFIX: &str = "trx";
const RETIRED_DIGITS: usize = IfName::MAX_LEN - RETIRED_PREFIX.len();

/// A fresh name for a retired link: `trx` + 12 hex digits, from a counter
/// seeded once per process with the clock and the pid, so two retirements
/// (in this process, or one before a crash) practically never pick the same
/// name; a clash is `EEXIST`, and the retirement tries the next.
pub fn retired_name() -> IfName {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut n = NEXT.load(Ordering::Relaxed);
    if n == 0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let seed = fnv1a(&[&now.to_le_bytes(), &std::process::id().to_le_bytes()]) | 1;
        // Whoever seeds first wins; the others use its seed.
        let _ = NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    n = NEXT.fetch_add(1, Ordering::Relaxed);
    let hex = format!("{n:016x}");
    let name = format!("{RETIRED_PREFIX}{}", &hex[16 - RETIRED_DIGITS..]);
    IfName::parse("ifname", &name).expect("trx + 12 hex digits is a valid interface name")
}

/// Whether `name` has the shape [`retired_name`] produces: what reconcile
/// deletes when a crash interrupted a batched deletion.
pub fn is_retired_name(name: &str) -> bool {
    name.len() == IfName::MAX_LEN
        && name.starts_with(RETIRED_PREFIX)
        && name[RETIRED_PREFIX.len()..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `name` has the shape [`host_veth_name`] produces (used by leak checks
/// to tell trellis's veths from a bridge that happens to start with `tr`).
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == IfName::MAX_LEN
        && name.starts_with(HOST_VETH_PREFIX)
        && name[HOST_VETH_PREFIX.len()..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn local_mac(domain: &[u8], name: &str) -> Mac {
    let h = fnv1a(&[domain, name.as_bytes()]).to_be_bytes();
    // Locally administered (bit 1 set), unicast (bit 0 clear): never collides
    // with a vendor-assigned MAC.
    [(h[0] & 0xfc) | 0x02, h[1], h[2], h[3], h[4], h[5]]
}

/// The MAC a bridge gets when its spec names none: stable for the name, so it
/// does not change as ports come and go, nor across reboots.
pub fn bridge_mac(name: &IfName) -> Mac {
    local_mac(b"trellis-bridge", name.as_str())
}

/// The MAC a container's peer gets when its spec names none, derived from the
/// host-side name (and so from the container id and interface name).
pub fn container_mac(host_name: &IfName) -> Mac {
    local_mac(b"trellis-container", host_name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(s: &str) -> ContainerId {
        ContainerId::parse("container_id", s).unwrap()
    }
    fn ifn(s: &str) -> IfName {
        IfName::parse("ifname", s).unwrap()
    }

    #[test]
    fn host_veth_name_is_deterministic_15_bytes_and_recognisable() {
        let a = host_veth_name(&cid("c1"), &ifn("eth0"));
        assert_eq!(a, host_veth_name(&cid("c1"), &ifn("eth0")));
        assert_eq!(a.as_str().len(), 15);
        assert!(is_host_veth_name(a.as_str()), "{a}");
        assert_ne!(a, host_veth_name(&cid("c1"), &ifn("eth1")));
        assert_ne!(a, host_veth_name(&cid("c2"), &ifn("eth0")));
        // The separator keeps shifted splits apart.
        assert_ne!(
            host_veth_name(&cid("ab"), &ifn("c")),
            host_veth_name(&cid("a"), &ifn("bc"))
        );
    }

    #[test]
    fn retired_names_are_distinct_and_never_taken_for_a_host_veth() {
        let (a, b) = (retired_name(), retired_name());
        assert_ne!(a, b);
        for n in [&a, &b] {
            assert!(is_retired_name(n.as_str()), "{n}");
            assert!(!is_host_veth_name(n.as_str()), "{n}");
        }
        let veth = host_veth_name(&cid("c1"), &ifn("eth0"));
        assert!(!is_retired_name(veth.as_str()));
        for name in [
            "trx",
            "trx0123456789a",
            "trx0123456789abc",
            "trx0123456789aZ",
            "tbx0123456789ab",
        ] {
            assert!(!is_retired_name(name), "{name}");
        }
    }

    #[test]
    fn golden_name_is_stable_across_releases() {
        // If this changes, detach after upgrade cannot find old veths: don't.
        let n = host_veth_name(&cid("abc"), &ifn("eth0"));
        assert_eq!(n.as_str(), GOLDEN, "hash scheme changed");
    }
    const GOLDEN: &str = "tr267c4c6022c8e";

    #[test]
    fn not_every_tr_name_is_a_host_veth() {
        for name in [
            "trellis0",
            "tr",
            "tr0123456789abcd",
            "tr0123456789abG",
            "xx0123456789abc",
        ] {
            assert!(!is_host_veth_name(name), "{name}");
        }
        assert!(is_host_veth_name("tr0123456789abc"));
    }

    #[test]
    fn derived_macs_are_local_unicast_and_stable() {
        let m = bridge_mac(&ifn("trellis0"));
        assert_eq!(m, bridge_mac(&ifn("trellis0")));
        assert_ne!(m, bridge_mac(&ifn("trellis1")));
        assert_eq!(m[0] & 0x03, 0x02, "{m:02x?}");
        let c = container_mac(&ifn("trellis0"));
        assert_ne!(m, c, "domains are separated");
        assert_eq!(c[0] & 0x03, 0x02);
    }

    #[test]
    fn fnv_matches_the_reference_before_finalising() {
        // Sanity: the empty input with one separator is deterministic.
        assert_eq!(fnv1a(&[b""]), fnv1a(&[b""]));
        assert_ne!(fnv1a(&[b"a"]), fnv1a(&[b"b"]));
    }
}
