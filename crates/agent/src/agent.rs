//! The agent: its backends, and the registry of networks and endpoints.

use crate::model::{Endpoint, Network};
use crate::records::Records;
use crate::{Error, Ports};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use trellis_ipam::Ipam;
use trellis_link::Links;
use trellis_nat::Nat;
use trellis_route::Routes;
use trellis_store::KvStore;

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
    /// Routed blocks whose blackhole route is known to be installed, so that
    /// an attach adds one only when IPAM has just claimed a new block.
    pub(crate) blackholed: Mutex<HashSet<IpNet>>,
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
        let networks = networks
            .into_iter()
            .map(|n| (n.spec.name.clone(), n))
            .collect();
        Ok(Agent {
            ipam: Ipam::new(be.store.clone(), node),
            be,
            records,
            networks: RwLock::new(networks),
            ports,
            blackholed: Mutex::default(),
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
        let nets = self.networks.read().expect("networks lock");
        let mut v: Vec<Network> = nets.values().cloned().collect();
        v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        v
    }

    /// All endpoints, as recorded.
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        self.records.endpoints().await
    }
}
