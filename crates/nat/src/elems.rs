//! Set elements: published ports, networks and routed pools, to and from
//! their key bytes.
//!
//! Byte layouts follow what the rules load into registers: every field of a
//! concatenation starts on a 4-byte register boundary and is zero padded;
//! protocol numbers are one byte, ports two bytes in network order, interface
//! names 16 bytes NUL padded (what `meta oifname` loads).

use crate::NetworkNat;
use crate::layout::{Fam, IFNAMSIZ};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use trellis_types::{IfName, PortMapping, Protocol};

/// `NFT_SET_ELEM_INTERVAL_END`: the element closes an interval (rbtree sets).
pub(crate) const ELEM_INTERVAL_END: u32 = 0x1;

/// One set element as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Elem {
    /// `NFTA_SET_ELEM_KEY`.
    pub(crate) key: Vec<u8>,
    /// `NFTA_SET_ELEM_KEY_END`: the last key of a range (concatenated intervals).
    pub(crate) key_end: Option<Vec<u8>>,
    /// `NFTA_SET_ELEM_DATA`: what a map maps the key to.
    pub(crate) data: Option<Vec<u8>>,
    /// `NFTA_SET_ELEM_FLAGS`.
    pub(crate) flags: u32,
}

/// The family whose sets hold an address.
pub(crate) fn fam_of(ip: IpAddr) -> Fam {
    match ip {
        IpAddr::V4(_) => Fam::V4,
        IpAddr::V6(_) => Fam::V6,
    }
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The key of the ports map: `meta l4proto . th dport`.
pub(crate) fn port_key(protocol: Protocol, host_port: u16) -> Vec<u8> {
    let p = host_port.to_be_bytes();
    vec![protocol.number(), 0, 0, 0, p[0], p[1], 0, 0]
}

/// The key of a mapping in its map: `l4proto . dport`, preceded by the host
/// address for a mapping published on one address only.
pub(crate) fn mapping_key(m: &PortMapping) -> Vec<u8> {
    let mut key = m.host_ip.map(addr_bytes).unwrap_or_default();
    key.extend(port_key(m.protocol, m.host_port));
    key
}

/// The map a mapping lives in: `ports4/6`, or `hostports4/6` when it is
/// published on one host address only.
pub(crate) fn map_of(m: &PortMapping) -> &'static str {
    let f = fam_of(m.container_ip);
    if m.host_ip.is_some() {
        f.hostports()
    } else {
        f.ports()
    }
}

/// The element of the ports map for one mapping: key and `addr . port` data.
pub(crate) fn port_elem(m: &PortMapping) -> Elem {
    let mut data = addr_bytes(m.container_ip);
    data.extend(m.container_port.to_be_bytes());
    data.extend([0, 0]);
    Elem {
        key: mapping_key(m),
        data: Some(data),
        ..Elem::default()
    }
}

fn addr_from(f: Fam, b: &[u8]) -> Option<IpAddr> {
    Some(match f {
        Fam::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?)),
        Fam::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?)),
    })
}

/// Reads an element of family `f`'s `ports` map (or, with `on_address`, its
/// `hostports` map) back into a mapping.
pub(crate) fn port_from_elem(f: Fam, on_address: bool, e: &Elem) -> Option<PortMapping> {
    let (k, d) = (&e.key, e.data.as_ref()?);
    let a = f.addr_len();
    let (host_ip, k) = match on_address {
        true if k.len() == a + 8 => (Some(addr_from(f, &k[..a])?), &k[a..]),
        false if k.len() == 8 => (None, &k[..]),
        _ => return None,
    };
    let protocol = match k[0] {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    if d.len() != a + 4 {
        return None;
    }
    Some(PortMapping {
        protocol,
        host_ip,
        host_port: u16::from_be_bytes([k[4], k[5]]),
        container_ip: addr_from(f, &d[..a])?,
        container_port: u16::from_be_bytes([d[a], d[a + 1]]),
    })
}

/// The element of an interface-name set (`bridges`, `internal`).
pub(crate) fn ifname_elem(n: &IfName) -> Elem {
    Elem {
        key: ifname_bytes(n),
        ..Elem::default()
    }
}

/// The element of the `pass` set: traffic from bridge `from` to bridge `to`.
pub(crate) fn pass_elem(from: &IfName, to: &IfName) -> Elem {
    let mut key = ifname_bytes(from);
    key.extend(ifname_bytes(to));
    Elem {
        key,
        ..Elem::default()
    }
}

/// Reads an interface name back out of `IFNAMSIZ` NUL-padded bytes.
pub(crate) fn ifname_from(b: &[u8]) -> Option<IfName> {
    let name = &b[..b.iter().position(|c| *c == 0).unwrap_or(b.len())];
    IfName::parse("bridge", std::str::from_utf8(name).ok()?).ok()
}

/// Reads a `pass` element back into `(from, to)`.
pub(crate) fn pass_from_elem(e: &Elem) -> Option<(IfName, IfName)> {
    if e.key.len() != 2 * IFNAMSIZ {
        return None;
    }
    let (a, b) = e.key.split_at(IFNAMSIZ);
    Some((ifname_from(a)?, ifname_from(b)?))
}

fn ifname_bytes(n: &IfName) -> Vec<u8> {
    let mut v = n.as_str().as_bytes().to_vec();
    v.resize(IFNAMSIZ, 0);
    v
}

/// The element of the `own` set for a network: `subnet . bridge` as a range
/// from the first to the last address of the subnet.
pub(crate) fn own_elem(net: &NetworkNat) -> Elem {
    let ifname = ifname_bytes(&net.bridge);
    let mut key = addr_bytes(net.subnet.network());
    key.extend(&ifname);
    let mut end = addr_bytes(net.subnet.broadcast());
    end.extend(&ifname);
    Elem {
        key,
        key_end: Some(end),
        ..Elem::default()
    }
}

/// The elements of a prefix set (`masq`, `pools`, `natpools`) for a prefix:
/// an rbtree interval is a start element and an end element holding the first
/// address *after* it (none when the prefix runs to the end of the address
/// space).
pub(crate) fn prefix_elems(subnet: IpNet) -> Vec<Elem> {
    let start = Elem {
        key: addr_bytes(subnet.network()),
        ..Elem::default()
    };
    let after = match subnet.broadcast() {
        IpAddr::V4(b) => u32::from(b)
            .checked_add(1)
            .map(|n| n.to_be_bytes().to_vec()),
        IpAddr::V6(b) => u128::from(b)
            .checked_add(1)
            .map(|n| n.to_be_bytes().to_vec()),
    };
    let end = after.map(|key| Elem {
        key,
        flags: ELEM_INTERVAL_END,
        ..Elem::default()
    });
    std::iter::once(start).chain(end).collect()
}

/// Reads the prefixes back out of a prefix set's elements. Sorted by key, an
/// end element before a start element of the same key (adjacent prefixes
/// share that key), each start is closed by the end element right after it,
/// or by the end of the address space when none follows.
pub(crate) fn prefixes_from_elems(f: Fam, elems: &[Elem]) -> Vec<IpNet> {
    let mut keys: Vec<(u128, bool)> = elems
        .iter()
        .filter_map(|e| Some((key_u128(f, &e.key)?, e.flags & ELEM_INTERVAL_END == 0)))
        .collect();
    keys.sort_unstable();
    let bits = 8 * f.addr_len() as u32;
    let top = u128::MAX >> (128 - bits);
    let mut out = Vec::new();
    let mut it = keys.into_iter().peekable();
    while let Some((start, is_start)) = it.next() {
        if !is_start {
            continue;
        }
        let last = match it.next_if(|(_, s)| !s) {
            Some((after, _)) => after.saturating_sub(1),
            None => top,
        };
        let plen = ((start ^ last).leading_zeros() - (128 - bits)) as u8;
        let net = match f {
            Fam::V4 => Ipv4Net::new(Ipv4Addr::from(start as u32), plen).map(IpNet::V4),
            Fam::V6 => Ipv6Net::new(Ipv6Addr::from(start), plen).map(IpNet::V6),
        };
        out.extend(net.ok());
    }
    out
}

/// An address key of family `f` as an integer.
fn key_u128(f: Fam, key: &[u8]) -> Option<u128> {
    match f {
        Fam::V4 => Some(u32::from_be_bytes(key.try_into().ok()?).into()),
        Fam::V6 => Some(u128::from_be_bytes(key.try_into().ok()?)),
    }
}

/// Reads an `own` element back into `(subnet, bridge)`.
pub(crate) fn own_from_elem(f: Fam, e: &Elem) -> Option<(IpNet, IfName)> {
    let a = f.addr_len();
    let end = e.key_end.as_ref()?;
    if e.key.len() != a + IFNAMSIZ || end.len() != a + IFNAMSIZ {
        return None;
    }
    let bridge = ifname_from(&e.key[a..])?;
    let subnet = match f {
        Fam::V4 => {
            let s = u32::from_be_bytes(e.key[..4].try_into().ok()?);
            let l = u32::from_be_bytes(end[..4].try_into().ok()?);
            let plen = (s ^ l).leading_zeros() as u8;
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(s), plen).ok()?)
        }
        Fam::V6 => {
            let s = u128::from_be_bytes(e.key[..16].try_into().ok()?);
            let l = u128::from_be_bytes(end[..16].try_into().ok()?);
            let plen = (s ^ l).leading_zeros() as u8;
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(s), plen).ok()?)
        }
    };
    Some((subnet, bridge))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(proto: Protocol, hp: u16, ip: &str, cp: u16) -> PortMapping {
        PortMapping {
            protocol: proto,
            host_ip: None,
            host_port: hp,
            container_ip: ip.parse().unwrap(),
            container_port: cp,
        }
    }

    #[test]
    fn port_8081_to_container_80_golden_bytes() {
        let e = port_elem(&pm(Protocol::Tcp, 8081, "192.168.169.3", 80));
        assert_eq!(e.key, [6, 0, 0, 0, 0x1f, 0x91, 0, 0]);
        assert_eq!(
            e.data.as_deref(),
            Some(&[192, 168, 169, 3, 0, 80, 0, 0][..])
        );
        assert_eq!(
            port_from_elem(Fam::V4, false, &e),
            Some(pm(Protocol::Tcp, 8081, "192.168.169.3", 80))
        );
    }

    #[test]
    fn a_port_on_one_host_address_is_keyed_by_address_then_port() {
        let m = pm(Protocol::Tcp, 8081, "192.168.169.3", 80).on(Some("127.0.0.1".parse().unwrap()));
        let e = port_elem(&m);
        assert_eq!(e.key, [127, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x91, 0, 0]);
        assert_eq!(map_of(&m), "hostports4");
        assert_eq!(port_from_elem(Fam::V4, true, &e), Some(m));
        assert_eq!(port_from_elem(Fam::V4, false, &e), None, "not a ports4 key");
        let v6 = pm(Protocol::Udp, 53, "fd00::3", 53).on(Some("2001:db8::1".parse().unwrap()));
        let e6 = port_elem(&v6);
        assert_eq!((e6.key.len(), map_of(&v6)), (24, "hostports6"));
        assert_eq!(port_from_elem(Fam::V6, true, &e6), Some(v6));
    }

    #[test]
    fn pass_elements_are_two_padded_names_and_round_trip() {
        let (a, b) = (
            IfName::parse("x", "br-a").unwrap(),
            IfName::parse("x", "br-b").unwrap(),
        );
        let e = pass_elem(&a, &b);
        assert_eq!(e.key.len(), 32);
        assert_eq!(&e.key[..5], b"br-a\0");
        assert_eq!(&e.key[16..21], b"br-b\0");
        assert_eq!(pass_from_elem(&e), Some((a.clone(), b)));
        assert_eq!(ifname_elem(&a).key, pass_elem(&a, &a).key[..16]);
    }

    #[test]
    fn udp_v6_port_round_trips() {
        let m = pm(Protocol::Udp, 53, "fd00::3", 5353);
        let e = port_elem(&m);
        assert_eq!(e.key[0], 17);
        assert_eq!(e.data.as_ref().unwrap().len(), 20);
        assert_eq!(port_from_elem(Fam::V6, false, &e), Some(m));
    }

    #[test]
    fn own_element_is_a_range_over_the_subnet_and_round_trips() {
        let net = NetworkNat {
            subnet: "192.168.169.0/24".parse().unwrap(),
            bridge: IfName::parse("bridge", "docker0").unwrap(),
            masquerade: true,
            internal: false,
        };
        let e = own_elem(&net);
        let mut key = vec![192, 168, 169, 0];
        key.extend(b"docker0\0\0\0\0\0\0\0\0\0");
        let mut end = vec![192, 168, 169, 255];
        end.extend(b"docker0\0\0\0\0\0\0\0\0\0");
        assert_eq!(e.key, key);
        assert_eq!(e.key_end, Some(end));
        assert_eq!(own_from_elem(Fam::V4, &e), Some((net.subnet, net.bridge)));
    }

    #[test]
    fn masq_interval_ends_after_the_broadcast_address() {
        let e = prefix_elems("10.0.0.0/8".parse().unwrap());
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, [10, 0, 0, 0]);
        assert_eq!(
            (e[1].key.as_slice(), e[1].flags),
            (&[11, 0, 0, 0][..], ELEM_INTERVAL_END)
        );
        let top = prefix_elems("255.255.255.0/24".parse().unwrap());
        assert_eq!(top.len(), 1, "no end element past the last address");
    }

    #[test]
    fn prefixes_read_back_from_shuffled_elements_adjacent_and_at_the_top() {
        let nets: Vec<IpNet> = [
            "10.244.0.0/16",
            "10.245.0.0/16",
            "10.9.9.9/32",
            "255.0.0.0/8",
        ]
        .map(|s| s.parse().unwrap())
        .to_vec();
        let mut all: Vec<Elem> = nets.iter().flat_map(|n| prefix_elems(*n)).collect();
        all.reverse(); // the kernel dumps an rbtree highest key first
        let mut want = nets.clone();
        want.sort();
        assert_eq!(prefixes_from_elems(Fam::V4, &all), want);
        let v6: Vec<IpNet> = ["fd00:244::/48", "fd00:245::/48", "::/0"]
            .map(|s| s.parse().unwrap())
            .to_vec();
        let elems: Vec<Elem> = v6[..2].iter().flat_map(|n| prefix_elems(*n)).collect();
        assert_eq!(prefixes_from_elems(Fam::V6, &elems), v6[..2]);
        let whole = prefix_elems(v6[2]);
        assert_eq!(prefixes_from_elems(Fam::V6, &whole), [v6[2]]);
    }
}
