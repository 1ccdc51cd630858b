//! `Nat` and `HostFirewall` on the fake: trellis's table as a [`NatState`]
//! held sorted, with `NftNat`'s input checks and conflict rules (the very
//! functions, from `trellis_nat::check`).

use crate::kernel::FakeKernel;
use crate::machine::Machine;
use async_trait::async_trait;
use nix::errno::Errno;
use trellis_nat::{
    Admitted, Error, HostFirewall, Nat, NatState, NetworkNat, RoutedPool, TABLE, check,
};
use trellis_types::{IfName, PortMapping};

fn fault(op: &'static str, _subject: String, errno: Errno) -> Error {
    Error::Kernel {
        op,
        errno: errno as i32,
        detail: Some("injected by trellis-fake".to_owned()),
    }
}

/// The table, or [`Error::NoTable`] as the kernel's `ENOENT` reads.
fn table(m: &mut Machine) -> Result<&mut NatState, Error> {
    m.nat.as_mut().ok_or(Error::NoTable(TABLE))
}

/// Sorted as the real listings are (networks by subnet and bridge).
fn normalise(st: &mut NatState) {
    st.networks
        .sort_by(|a, b| (a.subnet, &a.bridge).cmp(&(b.subnet, &b.bridge)));
    st.pools.sort();
    st.ports.sort();
    st.reach.retain(|(a, b)| a != b);
    st.reach.sort();
    st.reach.dedup();
}

fn add_network(m: &mut Machine, net: &NetworkNat) -> Result<(), Error> {
    check::network(net)?;
    let st = table(m)?;
    check::no_overlap(net, &st.networks)?;
    st.networks.retain(|e| e.subnet != net.subnet);
    st.networks.push(net.clone());
    normalise(st);
    Ok(())
}

fn add_pool(m: &mut Machine, pool: &RoutedPool) -> Result<(), Error> {
    check::pool(pool)?;
    let st = table(m)?;
    check::no_pool_overlap(pool, &st.pools)?;
    st.pools.retain(|e| e.cidr != pool.cidr);
    st.pools.push(*pool);
    normalise(st);
    Ok(())
}

fn publish(m: &mut Machine, ports: &[PortMapping]) -> Result<(), Error> {
    check::no_duplicate_ports(ports)?;
    let st = table(m)?;
    for p in ports {
        let same_family = |o: &&PortMapping| o.container_ip.is_ipv4() == p.container_ip.is_ipv4();
        if let Some(o) = st
            .ports
            .iter()
            .filter(same_family)
            .find(|o| o.clashes_with(p))
        {
            return Err(Error::PortInUse {
                protocol: p.protocol,
                host_port: p.host_port,
                existing: Some(*o),
            });
        }
    }
    st.ports.extend_from_slice(ports);
    normalise(st);
    Ok(())
}

#[async_trait]
impl Nat for FakeKernel {
    async fn ensure_table(&self) -> Result<(), Error> {
        self.call("ensure_table", String::new(), fault, |m| {
            m.nat.get_or_insert_with(NatState::default);
            Ok(())
        })
    }

    async fn sync(&self, state: &NatState) -> Result<(), Error> {
        self.call("sync", String::new(), fault, |m| {
            check::state(state)?;
            let mut st = state.clone();
            normalise(&mut st);
            m.nat = Some(st);
            Ok(())
        })
    }

    async fn add_network(&self, net: &NetworkNat) -> Result<(), Error> {
        let s = format!("{} on {}", net.subnet, net.bridge);
        self.call("add_network", s, fault, |m| add_network(m, net))
    }

    async fn remove_network(&self, net: &NetworkNat) -> Result<(), Error> {
        let s = format!("{} on {}", net.subnet, net.bridge);
        self.call("remove_network", s, fault, |m| {
            let st = table(m)?;
            st.networks
                .retain(|e| !(e.subnet == net.subnet && e.bridge == net.bridge));
            Ok(())
        })
    }

    async fn list_networks(&self) -> Result<Vec<NetworkNat>, Error> {
        self.call("list_networks", String::new(), fault, |m| {
            Ok(table(m)?.networks.clone())
        })
    }

    async fn add_pool(&self, pool: &RoutedPool) -> Result<(), Error> {
        self.call("add_pool", pool.cidr.to_string(), fault, |m| {
            add_pool(m, pool)
        })
    }

    async fn remove_pool(&self, pool: &RoutedPool) -> Result<(), Error> {
        self.call("remove_pool", pool.cidr.to_string(), fault, |m| {
            table(m)?.pools.retain(|e| e.cidr != pool.cidr);
            Ok(())
        })
    }

    async fn list_pools(&self) -> Result<Vec<RoutedPool>, Error> {
        self.call("list_pools", String::new(), fault, |m| {
            Ok(table(m)?.pools.clone())
        })
    }

    async fn set_reach(&self, pairs: &[(IfName, IfName)]) -> Result<(), Error> {
        let s = format!("{} pairs", pairs.len());
        self.call("set_reach", s, fault, |m| {
            let st = table(m)?;
            st.reach = pairs.to_vec();
            normalise(st);
            Ok(())
        })
    }

    async fn list_reach(&self) -> Result<Vec<(IfName, IfName)>, Error> {
        self.call("list_reach", String::new(), fault, |m| {
            Ok(table(m)?.reach.clone())
        })
    }

    async fn publish(&self, ports: &[PortMapping]) -> Result<(), Error> {
        let s = ports.iter().map(ToString::to_string).collect::<Vec<_>>();
        self.call("publish", s.join(", "), fault, |m| publish(m, ports))
    }

    async fn unpublish(&self, ports: &[PortMapping]) -> Result<(), Error> {
        let s = ports.iter().map(ToString::to_string).collect::<Vec<_>>();
        self.call("unpublish", s.join(", "), fault, |m| {
            // Without a table there is nothing to remove, as with NftNat.
            if let Some(st) = m.nat.as_mut() {
                st.ports.retain(|p| !ports.contains(p));
            }
            Ok(())
        })
    }

    async fn list_published(&self) -> Result<Vec<PortMapping>, Error> {
        self.call("list_published", String::new(), fault, |m| {
            Ok(table(m)?.ports.clone())
        })
    }

    async fn remove_all(&self) -> Result<(), Error> {
        self.call("remove_all", String::new(), fault, |m| {
            m.nat = None;
            Ok(())
        })
    }
}

/// The rules `admitted` asks for, in a canonical order.
fn canonical(admitted: &[Admitted]) -> Vec<Admitted> {
    let mut want = admitted.to_vec();
    want.sort();
    want.dedup();
    want
}

#[async_trait]
impl HostFirewall for FakeKernel {
    async fn admit(&self, admitted: &[Admitted]) -> Result<Vec<String>, Error> {
        let s = format!("{} admitted", admitted.len());
        self.call("admit", s, fault, |m| {
            // A host without a dropping forward chain has nothing to amend.
            if m.firewall.drops {
                m.firewall.admitted = canonical(admitted);
            }
            Ok(Vec::new())
        })
    }

    async fn check_admitted(&self, admitted: &[Admitted]) -> Result<Vec<String>, Error> {
        let s = format!("{} admitted", admitted.len());
        self.call("check_admitted", s, fault, |m| {
            let fw = &m.firewall;
            if !fw.drops || fw.admitted == canonical(admitted) {
                return Ok(Vec::new());
            }
            Ok(vec![format!(
                "the host's forward chain (fake) holds trellis rules for {:?}, not {:?}",
                fw.admitted,
                canonical(admitted)
            )])
        })
    }
}
