//! Input checks that need no kernel: they run before anything is sent.
//!
//! Public so that another implementation of [`crate::Nat`] (trellis-fake's
//! in-memory one) refuses exactly what [`crate::NftNat`] refuses.

use crate::{Error, NatState, NetworkNat, RoutedPool};
use trellis_types::{InvalidInput, PortMapping, check_prefix};

/// Refuses two mappings of one address family that claim the same host port
/// ([`PortMapping::clashes_with`]).
/// A host address must be of the container address's family, and an
/// address (`0.0.0.0` means every address: leave `host_ip` unset).
pub fn no_duplicate_ports(ports: &[PortMapping]) -> Result<(), Error> {
    for (i, m) in ports.iter().enumerate() {
        if let Some(h) = m.host_ip
            && (h.is_ipv4() != m.container_ip.is_ipv4() || h.is_unspecified())
        {
            let why = format!(
                "host address must be a specific address of the family of {}",
                m.container_ip
            );
            return Err(InvalidInput::new("host_ip", h, why).into());
        }
        let same = |o: &&PortMapping| {
            o.clashes_with(m) && o.container_ip.is_ipv4() == m.container_ip.is_ipv4()
        };
        if let Some(first) = ports[..i].iter().find(same) {
            return Err(Error::PortInUse {
                protocol: m.protocol,
                host_port: m.host_port,
                existing: Some(*first),
            });
        }
    }
    Ok(())
}

/// Checks a network on its own: a subnet without host bits.
pub fn network(net: &NetworkNat) -> Result<(), Error> {
    check_prefix("subnet", net.subnet)?;
    Ok(())
}

/// Refuses `net` if its subnet overlaps another network in `existing` (the same
/// subnet on the same bridge is the same network, not an overlap).
pub fn no_overlap(net: &NetworkNat, existing: &[NetworkNat]) -> Result<(), Error> {
    let clash = existing.iter().find(|e| {
        let same = e.subnet == net.subnet && e.bridge == net.bridge;
        let overlap =
            e.subnet.contains(&net.subnet.network()) || net.subnet.contains(&e.subnet.network());
        overlap && !same
    });
    match clash {
        Some(e) => Err(InvalidInput::new(
            "subnet",
            net.subnet,
            format!("overlaps network {} on bridge {}", e.subnet, e.bridge),
        )
        .into()),
        None => Ok(()),
    }
}

/// Checks a routed pool on its own: a prefix without host bits.
pub fn pool(p: &RoutedPool) -> Result<(), Error> {
    check_prefix("cidr", p.cidr)?;
    Ok(())
}

/// Refuses `p` if it overlaps another routed pool in `existing` (the same
/// prefix is the same pool: an update of `nat_outgoing`). Overlapping
/// intervals would also be refused by the kernel, but without naming the
/// pool in the way.
pub fn no_pool_overlap(p: &RoutedPool, existing: &[RoutedPool]) -> Result<(), Error> {
    let clash = existing.iter().find(|e| {
        e.cidr != p.cidr
            && (e.cidr.contains(&p.cidr.network()) || p.cidr.contains(&e.cidr.network()))
    });
    match clash {
        Some(e) => {
            Err(
                InvalidInput::new("cidr", p.cidr, format!("overlaps routed pool {}", e.cidr))
                    .into(),
            )
        }
        None => Ok(()),
    }
}

/// Checks a whole state: every network and pool, no overlaps (a pool listed
/// twice is an overlap too), no duplicate ports.
pub fn state(s: &NatState) -> Result<(), Error> {
    for (i, n) in s.networks.iter().enumerate() {
        network(n)?;
        no_overlap(n, &s.networks[..i])?;
    }
    for (i, p) in s.pools.iter().enumerate() {
        pool(p)?;
        no_pool_overlap(p, &s.pools[..i])?;
        if s.pools[..i].iter().any(|e| e.cidr == p.cidr) {
            let reason = "listed twice".to_owned();
            return Err(InvalidInput::new("cidr", p.cidr, reason).into());
        }
    }
    no_duplicate_ports(&s.ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_types::{IfName, Protocol};

    fn net(s: &str, br: &str) -> NetworkNat {
        NetworkNat {
            subnet: s.parse().unwrap(),
            bridge: IfName::parse("bridge", br).unwrap(),
            masquerade: true,
            internal: false,
        }
    }

    #[test]
    fn duplicate_host_port_in_one_request_is_refused() {
        let a = PortMapping::new(Protocol::Tcp, 8081, "10.0.0.2".parse().unwrap(), 80).unwrap();
        let b = PortMapping::new(Protocol::Tcp, 8081, "10.0.0.3".parse().unwrap(), 81).unwrap();
        let udp = PortMapping::new(Protocol::Udp, 8081, "10.0.0.3".parse().unwrap(), 81).unwrap();
        let v6 = PortMapping::new(Protocol::Tcp, 8081, "fd00::3".parse().unwrap(), 81).unwrap();
        assert!(no_duplicate_ports(&[a, udp, v6]).is_ok());
        let lo = a.on(Some("127.0.0.1".parse().unwrap()));
        let there = b.on(Some("10.1.253.101".parse().unwrap()));
        assert!(
            no_duplicate_ports(&[lo, there]).is_ok(),
            "two host addresses"
        );
        assert!(
            no_duplicate_ports(&[lo, b]).is_err(),
            "one address and all of them"
        );
        let wrong = v6.on(Some("127.0.0.1".parse().unwrap()));
        let Err(Error::Invalid(e)) = no_duplicate_ports(&[wrong]) else {
            panic!()
        };
        assert_eq!(e.field, "host_ip");
        match no_duplicate_ports(&[a, b]) {
            Err(Error::PortInUse {
                protocol: Protocol::Tcp,
                host_port: 8081,
                existing,
            }) => {
                assert_eq!(existing, Some(a))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overlapping_subnets_are_refused_naming_the_field() {
        let existing = [net("10.0.0.0/16", "br0")];
        let err = no_overlap(&net("10.0.1.0/24", "br1"), &existing).unwrap_err();
        let Error::Invalid(e) = err else { panic!() };
        assert_eq!(e.field, "subnet");
        assert!(e.reason.contains("br0"), "{e}");
        assert!(
            no_overlap(&net("10.0.0.0/16", "br0"), &existing).is_ok(),
            "same network"
        );
        assert!(no_overlap(&net("10.1.0.0/16", "br1"), &existing).is_ok());
    }

    #[test]
    fn overlapping_pools_are_refused_naming_the_field() {
        let p = |c: &str| RoutedPool {
            cidr: c.parse().unwrap(),
            nat_outgoing: true,
        };
        let existing = [p("10.244.0.0/16")];
        let Err(Error::Invalid(e)) = no_pool_overlap(&p("10.244.7.0/24"), &existing) else {
            panic!()
        };
        assert_eq!(e.field, "cidr");
        assert!(e.reason.contains("10.244.0.0/16"), "{e}");
        assert!(
            no_pool_overlap(&p("10.244.0.0/16"), &existing).is_ok(),
            "same pool"
        );
        assert!(
            no_pool_overlap(&p("10.245.0.0/16"), &existing).is_ok(),
            "adjacent"
        );
        let twice = NatState {
            pools: vec![p("10.244.0.0/16"), p("10.244.0.0/16")],
            ..NatState::default()
        };
        assert!(matches!(state(&twice), Err(Error::Invalid(_))));
        assert!(matches!(pool(&p("10.244.0.1/16")), Err(Error::Invalid(_))));
    }

    #[test]
    fn host_bits_are_refused() {
        let Err(Error::Invalid(e)) = network(&net("10.0.0.1/24", "br0")) else {
            panic!()
        };
        assert_eq!(e.field, "subnet");
    }
}
