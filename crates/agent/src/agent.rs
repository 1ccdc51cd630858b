//! The agent: networks, and the registry of what is attached.

use crate::model::{Endpoint, Network, NetworkSpec};
use crate::records::{self, Records};
use crate::{Error, Ports};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use trellis_ipam::{Ipam, PoolSpec, Reserve};
use trellis_link::{BridgeSpec, Links, Ns};
use trellis_nat::{Nat, NetworkNat};
use trellis_route::Routes;
use trellis_store::KvStore;
use trellis_types::{InvalidInput, check_prefix};

/// The kernel-facing parts the agent drives, injected so that tests can use
/// mocks and the lab can aim them at a namespace of its own.
#[derive(Clone)]
pub struct Backends {
    /// Links (bridges, veths, addresses).
    pub links: Arc<dyn Links>,
    /// Routes.
    pub routes: Arc<dyn Routes>,
    /// NAT.
    pub nat: Arc<dyn Nat>,
    /// Where IPAM and the agent's records live.
    pub store: Arc<dyn KvStore>,
}

/// The node core: creates networks and attaches containers to them.
///
/// Every method may run concurrently with every other. Nothing is serialised
/// behind one lock for the duration of an attach: IPAM is compare-and-swap,
/// host ports are claimed in a short critical section, and kernel objects are
/// per container.
pub struct Agent {
    pub(crate) be: Backends,
    pub(crate) ipam: Ipam,
    pub(crate) records: Records,
    pub(crate) networks: RwLock<HashMap<String, Network>>,
    pub(crate) ports: Ports,
}

impl Agent {
    /// An agent for node `node`, loading the networks and endpoints already
    /// recorded in the store (their published ports are claimed again).
    pub async fn open(be: Backends, node: &str) -> Result<Self, Error> {
        let records = Records::new(be.store.clone());
        let networks = records.networks().await?;
        let ports = Ports::default();
        for ep in records.endpoints().await? {
            ports.claim(&ep.request.handle(), &ep.request.ports)?;
        }
        Ok(Agent {
            ipam: Ipam::new(be.store.clone(), node),
            be,
            records,
            networks: RwLock::new(
                networks
                    .into_iter()
                    .map(|n| (n.spec.name.clone(), n))
                    .collect(),
            ),
            ports,
        })
    }

    /// The store the agent records into.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.be.store
    }

    /// The allocator (for usage reports and leak checks).
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Result<Network, Error> {
        let nets = self.networks.read().expect("networks lock");
        nets.get(name)
            .cloned()
            .ok_or_else(|| Error::NetworkNotFound(name.to_owned()))
    }

    /// All networks, by name.
    pub fn networks(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self
            .networks
            .read()
            .expect("networks lock")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        v
    }

    /// All endpoints, as recorded.
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        self.records.endpoints().await
    }

    /// Creates a bridge network: IPAM pool, bridge with its gateway address,
    /// NAT. The same spec twice is a no-op; a clash with another network's
    /// name, subnet or bridge is refused and changes nothing.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network, Error> {
        let net = self.validate_network(spec)?;
        if let Ok(existing) = self.network(&net.spec.name) {
            return if existing == net {
                Ok(existing)
            } else {
                Err(Error::NetworkExists(net.spec.name))
            };
        }
        let name = net.spec.name.clone();
        // A bridge name that is taken by an interface no network of ours
        // records is refused: adopting it would mean deleting someone else's
        // interface with the network.
        if self
            .be
            .links
            .link_exists(&Ns::Host, &net.spec.bridge)
            .await?
        {
            let why = "an interface of that name already exists on the host";
            return Err(InvalidInput::new("bridge", &net.spec.bridge, why).into());
        }
        self.ipam
            .create_pool(PoolSpec {
                name: name.clone(),
                cidr: net.spec.subnet,
                block_prefix_len: None,
                reserve: Reserve::Bridge {
                    gateway: net.gateway,
                },
            })
            .await
            .map_err(rename_pool_fields)?;
        if let Err(e) = self.plumb_network(&net).await {
            // Only what this call made: the bridge did not exist before.
            self.unplumb_network(&net).await.ok();
            self.ipam.delete_pool(&name).await.ok();
            return Err(e);
        }
        self.networks
            .write()
            .expect("networks lock")
            .insert(name, net.clone());
        Ok(net)
    }

    async fn plumb_network(&self, net: &Network) -> Result<(), Error> {
        self.be
            .links
            .ensure_bridge(&BridgeSpec {
                name: net.spec.bridge.clone(),
                gateway: vec![net.gateway_net()],
                mac: None,
                mtu: net.spec.mtu,
            })
            .await?;
        self.be.nat.ensure_table().await?;
        self.be.nat.add_network(&network_nat(net)).await?;
        self.records.put_network(net).await
    }

    async fn unplumb_network(&self, net: &Network) -> Result<(), Error> {
        let mut errors = Vec::new();
        if let Err(e) = self.be.nat.remove_network(&network_nat(net)).await {
            errors.push(e.to_string());
        }
        if let Err(e) = self.be.links.delete_link(&net.spec.bridge).await {
            errors.push(e.to_string());
        }
        if let Err(e) = self.records.delete_network(&net.spec.name).await {
            errors.push(e.to_string());
        }
        records::teardown_result(format!("network {:?}", net.spec.name), errors)
    }

    /// Deletes a network: NAT, bridge, pool, record. Refused while endpoints
    /// are attached. When it was the last network, trellis's nftables table
    /// goes too, so an idle host holds nothing of trellis. Unknown is done.
    pub async fn delete_network(&self, name: &str) -> Result<(), Error> {
        let Ok(net) = self.network(name) else {
            return Ok(());
        };
        let attached = self.records.endpoints().await?;
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
        self.ipam.delete_pool(name).await?;
        let last = {
            let mut nets = self.networks.write().expect("networks lock");
            nets.remove(name);
            nets.is_empty()
        };
        if last {
            self.be.nat.remove_all().await?;
        }
        Ok(())
    }

    fn validate_network(&self, mut spec: NetworkSpec) -> Result<Network, Error> {
        let subnet = check_prefix("subnet", spec.subnet)?;
        let gateway = match spec.gateway {
            Some(g) => g,
            None => subnet.hosts().next().ok_or_else(|| {
                InvalidInput::new("subnet", subnet, "subnet has no host addresses")
            })?,
        };
        if !subnet.contains(&gateway) || gateway == subnet.network() {
            return Err(InvalidInput::new(
                "gateway",
                gateway,
                format!("gateway must be a host address of {subnet}"),
            )
            .into());
        }
        spec.gateway = Some(gateway);
        let nets = self.networks.read().expect("networks lock");
        for other in nets.values().filter(|o| o.spec.name != spec.name) {
            if other.spec.bridge == spec.bridge {
                let why = format!("bridge is already used by network {:?}", other.spec.name);
                return Err(InvalidInput::new("bridge", &spec.bridge, why).into());
            }
        }
        Ok(Network { spec, gateway })
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

/// The NAT view of a network.
pub(crate) fn network_nat(net: &Network) -> NetworkNat {
    NetworkNat {
        subnet: net.spec.subnet,
        bridge: net.spec.bridge.clone(),
        masquerade: net.spec.masquerade,
    }
}

/// The address with the network's prefix length.
pub(crate) fn with_prefix(net: &Network, ip: IpAddr) -> ipnet::IpNet {
    ipnet::IpNet::new(ip, net.spec.subnet.prefix_len()).expect("prefix length of a valid subnet")
}
