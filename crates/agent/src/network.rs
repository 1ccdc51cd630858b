//! Creating and deleting networks, in either mode.
//!
//! A network is: IPAM pools (one per subnet), then the kernel side — a bridge
//! with its gateway address and NAT elements (bridge mode), or NAT pool
//! elements and the host-wide switches routing needs (routed mode) — then its
//! record. A failure part-way undoes what this call made, and nothing else.

use crate::Error;
use crate::agent::Agent;
use crate::events::Event;
use crate::model::{Network, NetworkMode, NetworkSpec};
use crate::records::teardown_result;
use crate::routed;
use ipnet::IpNet;
use std::net::IpAddr;
use trellis_ipam::{PoolSpec, Reserve};
use trellis_link::{BridgeSpec, Ns, is_host_veth_name};
use trellis_nat::{NetworkNat, RoutedPool};
use trellis_types::{IfName, InvalidInput, check_prefix};

impl Agent {
    /// Creates a network. The same spec twice is a no-op; a clash with another
    /// network's name, subnet or bridge is refused and changes nothing.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network, Error> {
        if spec.subnet_pool.is_some() {
            return self.create_with_cluster_subnet(spec).await;
        }
        self.create_network_now(spec).await
    }

    pub(crate) async fn create_network_now(&self, spec: NetworkSpec) -> Result<Network, Error> {
        let mut net = self.validate_network(spec)?;
        let _changing = self.network_changes.lock().await;
        if let Ok(existing) = self.network(net.spec.name.as_str()) {
            return if (&existing.spec, &existing.gateways) == (&net.spec, &net.gateways) {
                Ok(existing)
            } else {
                Err(Error::NetworkExists(net.spec.name.to_string()))
            };
        }
        if let Some(bridge) = net.spec.bridge()
            && self.be.links.link_exists(&Ns::Host, bridge).await?
        {
            // Adopting it would mean deleting someone else's interface with
            // the network.
            let why = "an interface of that name already exists on the host";
            return Err(InvalidInput::new("bridge", bridge, why).into());
        }
        net.warnings = self.check_network_on_host(&net).await?;
        self.create_pools(&net).await?;
        if let Err(e) = self.plumb_network(&net).await {
            self.unplumb_network(&net).await.ok();
            self.delete_pools(&net).await.ok();
            return Err(e);
        }
        let name = net.spec.name.clone();
        self.networks
            .write()
            .expect("networks lock")
            .insert(name, net.clone());
        self.sync_host_firewall().await;
        self.emit(Event::NetworkCreated(net.clone()));
        Ok(net)
    }

    /// Deletes a network. Refused while endpoints are attached. When it was
    /// the last network, trellis's nftables table goes too, so an idle host
    /// holds nothing of trellis. Unknown is done.
    pub async fn delete_network(&self, name: &str) -> Result<(), Error> {
        let _changing = self.network_changes.lock().await;
        let Ok(net) = self.network(name) else {
            return Ok(());
        };
        // Every node's: a definition is shared, and deleting it under
        // another node's endpoints would have that node detach them.
        let attached = self.records.endpoints_of_every_node().await?;
        let n = attached
            .iter()
            .filter(|e| e.request.network == name)
            .count();
        if n > 0 {
            return Err(Error::NetworkInUse {
                network: name.to_owned(),
                endpoints: n,
            });
        }
        self.unplumb_network(&net).await?;
        self.delete_pools(&net).await?;
        let last = {
            let mut nets = self.networks.write().expect("networks lock");
            nets.remove(name);
            nets.is_empty()
        };
        self.sync_host_firewall().await;
        if last {
            self.be.nat.remove_all().await?;
        } else if net.spec.bridge().is_some() {
            // Pairs with its bridge go (made again if a network of that name
            // is created again: `reach` names networks, not bridges).
            self.be
                .nat
                .set_reach(&reach_pairs(&self.networks()))
                .await?;
        }
        if let (Some(pool), [subnet]) = (&net.spec.subnet_pool, net.spec.subnets.as_slice()) {
            // The node's subnet of a cluster pool goes back with its network.
            match self.membership() {
                Ok(m) => {
                    if let Err(e) = m.release_block(pool, *subnet).await {
                        tracing::warn!(error = %e, %subnet, "cluster subnet of a deleted network not released");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, %subnet, "cluster subnet of a deleted network not released")
                }
            }
        }
        self.emit(Event::NetworkDeleted(net));
        Ok(())
    }

    async fn create_pools(&self, net: &Network) -> Result<(), Error> {
        let mut made: Vec<String> = Vec::new();
        for (pool, cidr) in net.pools() {
            let reserve = match (&net.spec.mode, net.gateways.first()) {
                (NetworkMode::Bridge { .. }, Some(&gateway)) => Reserve::Bridge { gateway },
                _ => Reserve::None,
            };
            let granted = net.granted();
            let spec = PoolSpec {
                name: pool.to_string(),
                cidr,
                // A granted pool's blocks are the controller's.
                block_prefix_len: net
                    .cluster_pool_of(pool.as_str())
                    .filter(|_| granted)
                    .map(|c| c.block_len),
                reserve,
                granted,
            };
            if let Err(e) = self.ipam.create_pool(spec).await {
                for p in made {
                    self.ipam.delete_pool(&p).await.ok();
                }
                return Err(rename_pool_fields(e));
            }
            made.push(pool.to_string());
        }
        Ok(())
    }

    async fn delete_pools(&self, net: &Network) -> Result<(), Error> {
        for (pool, _) in net.pools() {
            match self.ipam.delete_pool(pool.as_str()).await {
                Ok(()) | Err(trellis_ipam::Error::PoolNotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub(crate) async fn plumb_network(&self, net: &Network) -> Result<(), Error> {
        self.be.nat.ensure_table().await?;
        // Before the bridge exists: it must not be given accept_ra=2.
        self.enable_forwarding(net).await?;
        match &net.spec.mode {
            NetworkMode::Bridge { .. } => {
                let spec = bridge_spec(net);
                let bridge = spec.name.clone();
                self.be
                    .links
                    .ensure_bridge(&spec)
                    .await
                    .map_err(crate::guard::refused("bridge", &bridge))?;
                self.be.nat.add_network(&bridge_nat(net)).await?;
                let mut all = self.networks();
                all.push(net.clone());
                self.be.nat.set_reach(&reach_pairs(&all)).await?;
            }
            NetworkMode::Routed => {
                for pool in routed_pools(net) {
                    self.be.nat.add_pool(&pool).await?;
                }
            }
        }
        self.records.put_network(net).await
    }

    async fn unplumb_network(&self, net: &Network) -> Result<(), Error> {
        let mut errors = Vec::new();
        let mut note = |r: Result<(), Error>| {
            if let Err(e) = r {
                errors.push(e.to_string());
            }
        };
        match &net.spec.mode {
            NetworkMode::Bridge { bridge } => {
                note(
                    self.be
                        .nat
                        .remove_network(&bridge_nat(net))
                        .await
                        .map_err(Error::from),
                );
                note(self.be.links.delete_link(bridge).await.map_err(Error::from));
            }
            NetworkMode::Routed => {
                for pool in routed_pools(net) {
                    note(self.be.nat.remove_pool(&pool).await.map_err(Error::from));
                }
                note(self.remove_blackholes(net).await);
            }
        }
        note(self.records.delete_network(net.spec.name.as_str()).await);
        teardown_result(format!("network {:?}", net.spec.name), errors)
    }

    fn validate_network(&self, mut spec: NetworkSpec) -> Result<Network, Error> {
        check_subnets(&spec)?;
        check_isolation(&spec)?;
        check_mtu(&spec)?;
        if let Some(bridge) = spec.bridge() {
            check_bridge_name(bridge)?;
        }
        let gateways = match &spec.mode {
            NetworkMode::Bridge { .. } => {
                let gateway = bridge_gateway(&spec)?;
                spec.gateway = Some(gateway);
                vec![gateway]
            }
            NetworkMode::Routed => {
                if let Some(g) = spec.gateway {
                    let why = "routed networks always use the link-local gateway 169.254.1.1";
                    return Err(InvalidInput::new("gateway", g, why).into());
                }
                routed::gateways(&spec.subnets)
            }
        };
        let nets = self.networks.read().expect("networks lock");
        if let Some(bridge) = spec.bridge() {
            for other in nets.values().filter(|o| o.spec.name != spec.name) {
                if other.spec.bridge() == Some(bridge) {
                    let why = format!("bridge is already used by network {:?}", other.spec.name);
                    return Err(InvalidInput::new("bridge", bridge, why).into());
                }
            }
        }
        Ok(Network {
            spec,
            gateways,
            warnings: Vec::new(),
        })
    }
}

/// `internal`, `reach` and `routable` are bridge-network settings (routed
/// networks are one flat routed space); `reach` names other networks, each
/// once.
pub(crate) fn check_isolation(spec: &NetworkSpec) -> Result<(), InvalidInput> {
    if spec.bridge().is_none() {
        if spec.internal {
            let why = "only bridge networks can be internal";
            return Err(InvalidInput::new("internal", true, why));
        }
        if let Some(r) = spec.reach.first() {
            let why = "only bridge networks are kept apart (routed networks are one routed space)";
            return Err(InvalidInput::new("reach", r, why));
        }
    }
    for (i, r) in spec.reach.iter().enumerate() {
        if *r == spec.name || spec.reach[..i].contains(r) {
            let why = "names the network itself or another entry twice";
            return Err(InvalidInput::new("reach", r, why));
        }
    }
    if spec.internal && !spec.reach.is_empty() {
        let why = "an internal network reaches nothing off its bridge";
        return Err(InvalidInput::new("reach", spec.reach.join(","), why));
    }
    check_routable(spec)
}

/// `routable` is a bridge network's: reached from outside by its own
/// addresses, so neither cut off (`internal`) nor masqueraded.
fn check_routable(spec: &NetworkSpec) -> Result<(), InvalidInput> {
    if !spec.routable {
        return Ok(());
    }
    let why = if spec.bridge().is_none() {
        "only bridge networks can be routable (a routed network's blocks are always announced)"
    } else if spec.internal {
        "an internal network is reached by nothing off its bridge, so it cannot be routable (internal is on)"
    } else if spec.masquerade {
        "a routable network is reached by its containers' own addresses, so its traffic is not masqueraded: turn masquerade (outgoing_nat) off"
    } else {
        return Ok(());
    };
    Err(InvalidInput::new("routable", true, why))
}

fn check_subnets(spec: &NetworkSpec) -> Result<(), InvalidInput> {
    let s = &spec.subnets;
    let shown = || format!("{s:?}");
    if s.is_empty() {
        return Err(InvalidInput::new(
            "subnets",
            shown(),
            "at least one subnet is required",
        ));
    }
    for &subnet in s {
        check_prefix("subnet", subnet)?;
        crate::safety::check_special("subnet", subnet)?;
    }
    let v4 = s.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
    if v4 > 1 || s.len() - v4 > 1 {
        return Err(InvalidInput::new(
            "subnets",
            shown(),
            "at most one subnet per address family",
        ));
    }
    if spec.bridge().is_some() && s.len() != 1 {
        return Err(InvalidInput::new(
            "subnets",
            shown(),
            "a bridge network has exactly one subnet",
        ));
    }
    Ok(())
}

fn bridge_gateway(spec: &NetworkSpec) -> Result<IpAddr, InvalidInput> {
    let subnet = spec.subnets[0];
    let gateway = match spec.gateway {
        Some(g) => g,
        // ipnet counts an IPv6 prefix's first address as a host; it is the
        // subnet-router anycast address, never the bridge's.
        None => subnet
            .hosts()
            .find(|h| *h != subnet.network())
            .ok_or_else(|| InvalidInput::new("subnet", subnet, "subnet has no host addresses"))?,
    };
    let broadcast =
        subnet.addr().is_ipv4() && subnet.prefix_len() < 31 && gateway == subnet.broadcast();
    if !subnet.contains(&gateway) || gateway == subnet.network() || broadcast {
        let why = format!("gateway must be a host address of {subnet}");
        return Err(InvalidInput::new("gateway", gateway, why));
    }
    Ok(gateway)
}

/// A bridge name trellis may create: not one the system keeps for itself,
/// and not of the shape of trellis's own host veths (`tr` + 13 hex digits),
/// which garbage collection would take for a leaked veth and delete.
fn check_bridge_name(bridge: &IfName) -> Result<(), InvalidInput> {
    bridge.check_creatable("bridge")?;
    if is_host_veth_name(bridge.as_str()) {
        let why = "names of the form tr + 13 hex digits are trellis's host veths";
        return Err(InvalidInput::new("bridge", bridge, why));
    }
    Ok(())
}

/// The MTU range of an Ethernet-like link (68, RFC 791's minimum, to the
/// largest the kernel takes for a bridge or veth); IPv6 needs 1280 (RFC 8200).
fn check_mtu(spec: &NetworkSpec) -> Result<(), InvalidInput> {
    let Some(mtu) = spec.mtu else {
        return Ok(());
    };
    let min = if spec.subnets.iter().any(|s| s.addr().is_ipv6()) {
        1280
    } else {
        68
    };
    if (min..=65535).contains(&mtu) {
        Ok(())
    } else {
        let why = format!("mtu must be {min} to 65535");
        Err(InvalidInput::new("mtu", mtu, why))
    }
}

/// IPAM names its fields after a pool (`cidr`, `name`); a caller of the
/// agent said `subnet` and `name` of a network.
fn rename_pool_fields(e: trellis_ipam::Error) -> Error {
    match e {
        trellis_ipam::Error::Invalid(mut bad) => {
            if bad.field == "cidr" {
                bad.field = "subnet";
            }
            Error::Invalid(bad)
        }
        trellis_ipam::Error::PoolExists { pool } => Error::NetworkExists(pool),
        other => other.into(),
    }
}

/// The bridge of a bridge network, with its gateway address.
pub(crate) fn bridge_spec(net: &Network) -> BridgeSpec {
    let gateway = IpNet::new(net.gateways[0], net.spec.subnets[0].prefix_len())
        .expect("prefix length of a valid subnet");
    BridgeSpec {
        name: net.spec.bridge().expect("a bridge network").clone(),
        gateway: vec![gateway],
        mac: None,
        mtu: net.spec.mtu,
    }
}

/// The NAT view of a bridge network. An internal network is never
/// masqueraded: nothing of it leaves the bridge; nor is a routable one: it
/// is reached by its own addresses (validation refuses `masquerade` with
/// `routable` anyway).
/// Inbound, a routable network needs nothing more: trellis's forward chain
/// leaves traffic between a bridge and the uplink alone, and the host
/// firewall's accept rules admit every bridge network both ways.
pub(crate) fn bridge_nat(net: &Network) -> NetworkNat {
    NetworkNat {
        subnet: net.spec.subnets[0],
        bridge: net.spec.bridge().expect("a bridge network").clone(),
        masquerade: net.spec.masquerade && !net.spec.internal && !net.spec.routable,
        internal: net.spec.internal,
    }
}

/// The pairs of bridges forwarded between bridge networks: `(a, b)` for every
/// bridge network `a` naming an existing bridge network `b` in its `reach`;
/// sorted, each once.
pub(crate) fn reach_pairs(networks: &[Network]) -> Vec<(IfName, IfName)> {
    let bridge_of = |name: &str| {
        networks
            .iter()
            .find(|n| n.spec.name == name)
            .and_then(|n| n.spec.bridge())
    };
    let mut pairs: Vec<(IfName, IfName)> = networks
        .iter()
        .filter_map(|n| Some((n, n.spec.bridge()?)))
        .flat_map(|(n, from)| {
            n.spec
                .reach
                .iter()
                .filter_map(move |r| Some((from.clone(), bridge_of(r.as_str())?.clone())))
        })
        .filter(|(a, b)| a != b)
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// The NAT view of a routed network's pools.
pub(crate) fn routed_pools(net: &Network) -> Vec<RoutedPool> {
    net.spec
        .subnets
        .iter()
        .map(|&cidr| RoutedPool {
            cidr,
            nat_outgoing: net.spec.masquerade,
        })
        .collect()
}
