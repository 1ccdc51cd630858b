//! The agent: its backends, and the registry of networks and endpoints.

use crate::events::{CAPACITY, Event};
use crate::model::{Endpoint, EndpointFilter, Network};
use crate::reaper::Reaper;
use crate::records::Records;
use crate::watch::{NetworkMap, NetworkWatch};
use crate::{Error, HostPolicy, Ports};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use trellis_ipam::Ipam;
use trellis_link::Links;
use trellis_nat::{HostFirewall, Nat};
use trellis_route::Routes;
use trellis_store::KvStore;
use trellis_types::{Handle, NodeName};

/// The kernel-facing parts the agent drives, injected so that tests can use
/// mocks and the lab can aim them at a namespace of their own.
#[derive(Clone)]
pub struct Backends {
    /// Links (bridges, veths, addresses).
    pub links: Arc<dyn Links>,
    /// Routes.
    pub routes: Arc<dyn Routes>,
    /// NAT.
    pub nat: Arc<dyn Nat>,
    /// Accept rules for trellis's networks in the host's own firewall.
    pub hostfw: Arc<dyn HostFirewall>,
    /// Where IPAM and the agent's records live.
    pub store: Arc<dyn KvStore>,
}

impl Backends {
    /// Backends that are all one object, which serves as links, routes, NAT
    /// and host firewall at once (as `trellis-fake`'s in-memory kernel does),
    /// recording into `store`.
    pub fn on<K>(kernel: K, store: Arc<dyn KvStore>) -> Self
    where
        K: Links + Routes + Nat + HostFirewall + Clone + 'static,
    {
        Backends {
            links: Arc::new(kernel.clone()),
            routes: Arc::new(kernel.clone()),
            nat: Arc::new(kernel.clone()),
            hostfw: Arc::new(kernel),
            store,
        }
    }
}

/// The node core: creates networks and attaches containers to them.
///
/// Every method may run concurrently with every other. Nothing is serialised
/// behind one lock for the duration of an attach: IPAM is compare-and-swap
/// (with a short per-pool lock around the allocation only), host ports are
/// claimed in a short critical section, and kernel objects are per container.
pub struct Agent {
    pub(crate) be: Backends,
    pub(crate) node: NodeName,
    pub(crate) ipam: Ipam,
    pub(crate) records: Records,
    /// The network definitions, kept true by a watch of the store.
    pub(crate) networks: NetworkMap,
    _watch: NetworkWatch,
    pub(crate) ports: Ports,
    /// Routed blocks whose blackhole route is known to be installed, so that
    /// an attach adds one only when IPAM has just claimed a new block.
    pub(crate) blackholed: Mutex<HashSet<IpNet>>,
    /// One short async lock per IPAM pool, held only while allocating.
    pub(crate) pool_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Attaches under way: their allocations and veths are not orphans yet.
    pub(crate) inflight: Mutex<HashSet<Handle>>,
    /// Detaches under way (how many of each handle): between taking the
    /// kernel objects and deleting the record, an endpoint looks broken to
    /// a convergence round, which must not rebuild it.
    pub(crate) detaching: Mutex<HashMap<Handle, usize>>,
    pub(crate) events: broadcast::Sender<Event>,
    /// Whether start-up reconciliation has run (readiness).
    pub(crate) reconciled: AtomicBool,
    /// What trellis manages on the host beyond its own objects.
    pub(crate) host: HostPolicy,
    /// Serialises host firewall changes; holds the last one's warnings.
    pub(crate) hostfw_warnings: tokio::sync::Mutex<Vec<String>>,
    /// Deletes retired veths in batches, off the requests' path.
    pub(crate) reaper: Reaper,
    /// The node's cluster membership, once joined.
    pub(crate) membership: std::sync::RwLock<Option<Arc<dyn crate::Membership>>>,
    /// Routes to other nodes' blocks (`None`: not managed, standalone).
    pub(crate) peer_routes: Mutex<Option<Vec<trellis_route::PeerRoute>>>,
    /// The cluster's prefixes: destinations never masqueraded to.
    pub(crate) cluster_prefixes: Mutex<Vec<IpNet>>,
    /// Held by a network's creation or deletion and by a convergence of
    /// the node: a round's desired state is computed from the networks
    /// before it reads the kernel, so a network plumbed or unplumbed in
    /// between would look drifted — its bridge made again after its
    /// deletion (and kept: no record explains it, nor is a bridge ever
    /// judged an orphan), its nftables elements taken after its creation.
    pub(crate) network_changes: tokio::sync::Mutex<()>,
    /// One async lock per endpoint (container interface) that requests or
    /// repairs are working on: an attach, a detach and a convergence's
    /// repair of one endpoint never interleave (see [`EndpointLock`]).
    pub(crate) endpoint_locks: Mutex<HashMap<Handle, Arc<tokio::sync::Mutex<()>>>>,
}

impl Agent {
    /// An agent for node `node`, loading the networks (and following their
    /// definitions in the store from then on) and this node's endpoints
    /// (their published ports are claimed again). Changes nothing in the
    /// kernel; run [`Agent::reconcile`] next.
    /// A node name that cannot be a store key (see [`NodeName`]) is
    /// [`Error::Invalid`].
    pub async fn open(be: Backends, node: &str) -> Result<Self, Error> {
        let node = NodeName::parse("node", node)?;
        let records = Records::new(be.store.clone(), &node);
        let adopted = records.adopt_legacy().await?;
        if adopted > 0 {
            tracing::info!(adopted, %node, "endpoint records moved under this node");
        }
        let ports = Ports::default();
        for ep in records.endpoints().await? {
            ports.claim(&ep.request.handle(), &ep.request.ports)?;
        }
        let events = broadcast::channel(CAPACITY).0;
        let networks = NetworkMap::default();
        let watch =
            crate::watch::follow(be.store.clone(), networks.clone(), events.clone()).await?;
        Ok(Agent {
            ipam: Ipam::new(be.store.clone(), node.as_str()),
            node,
            records,
            networks,
            _watch: watch,
            ports,
            blackholed: Mutex::default(),
            pool_locks: Mutex::default(),
            inflight: Mutex::default(),
            detaching: Mutex::default(),
            events,
            reconciled: AtomicBool::new(false),
            host: HostPolicy::default(),
            hostfw_warnings: tokio::sync::Mutex::default(),
            reaper: Reaper::start(be.links.clone()),
            membership: std::sync::RwLock::default(),
            peer_routes: Mutex::default(),
            cluster_prefixes: Mutex::default(),
            network_changes: tokio::sync::Mutex::default(),
            endpoint_locks: Mutex::default(),
            be,
        })
    }

    /// The node this agent serves.
    pub fn node(&self) -> &str {
        self.node.as_str()
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

    /// All attached endpoints, as recorded. An attach under way is not
    /// listed until it has finished (its record is written before its
    /// plumbing).
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        let mut eps = self.records.endpoints().await?;
        let inflight = self.inflight.lock().expect("inflight lock");
        eps.retain(|ep| !inflight.contains(&ep.request.handle()));
        Ok(eps)
    }

    /// The attached endpoints that pass `filter`, by container and interface.
    pub async fn list_endpoints(&self, filter: &EndpointFilter) -> Result<Vec<Endpoint>, Error> {
        let mut eps: Vec<Endpoint> = self
            .endpoints()
            .await?
            .into_iter()
            .filter(|ep| filter.matches(ep))
            .collect();
        eps.sort_by_key(|ep| ep.request.handle());
        Ok(eps)
    }

    /// The one executor of kernel changes, over this agent's backends.
    pub(crate) fn executor(&self) -> crate::node::Executor<'_> {
        crate::node::Executor {
            links: &*self.be.links,
            routes: &*self.be.routes,
            nat: &*self.be.nat,
            reaper: &self.reaper,
        }
    }

    /// Waits until the veths detached so far are deleted from the kernel,
    /// not only retired (a detach answers once its veth is out of the way;
    /// the kernel's slow teardown follows in batches). For a clean stop,
    /// and for tests that compare the host before and after.
    pub async fn settle(&self) {
        self.reaper.settle().await;
    }

    /// The allocation lock of `pool` (created on first use).
    pub(crate) fn pool_lock(&self, pool: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.pool_locks.lock().expect("pool locks");
        locks.entry(pool.to_owned()).or_default().clone()
    }
}

/// Holds one endpoint's lock (see [`Agent::lock_endpoint`]); the lock is
/// forgotten when the last holder or waiter lets go, so the map holds only
/// endpoints being worked on.
pub(crate) struct EndpointLock<'a> {
    agent: &'a Agent,
    handle: Handle,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Agent {
    /// Locks the endpoint `handle` against other requests and repairs of
    /// it, waiting for the one that holds it. An attach and a detach hold it
    /// throughout; a convergence holds it while it repairs that endpoint,
    /// which it looks at afresh under the lock (its view of the node may be
    /// older than a request that began meanwhile). Locks of different
    /// endpoints never wait on each other, and no one holds two.
    pub(crate) async fn lock_endpoint(&self, handle: &Handle) -> EndpointLock<'_> {
        let lock = {
            let mut locks = self.endpoint_locks.lock().expect("endpoint locks");
            locks.entry(handle.clone()).or_default().clone()
        };
        EndpointLock {
            agent: self,
            handle: handle.clone(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for EndpointLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.agent.endpoint_locks.lock().expect("endpoint locks");
        // Only the map's own reference left: no one holds or awaits it.
        if locks
            .get(&self.handle)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.handle);
        }
    }
}

/// Marks an attach as under way for as long as it lives (also when the
/// attach future is dropped half-way), so that GC leaves its pieces alone and
/// a second attach of the same handle is refused instead of racing it.
pub(crate) struct Inflight<'a> {
    agent: &'a Agent,
    handle: Handle,
}

impl<'a> Inflight<'a> {
    /// `None` if an attach of `handle` is already under way.
    pub(crate) fn begin(agent: &'a Agent, handle: &Handle) -> Option<Self> {
        let mut set = agent.inflight.lock().expect("inflight lock");
        set.insert(handle.clone()).then(|| Inflight {
            agent,
            handle: handle.clone(),
        })
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut set = self.agent.inflight.lock().expect("inflight lock");
        set.remove(&self.handle);
    }
}

/// Marks a detach as under way for as long as it lives. Detaches of one
/// handle may run side by side (each is idempotent), so they are counted.
pub(crate) struct Detaching<'a> {
    agent: &'a Agent,
    handle: Handle,
}

impl<'a> Detaching<'a> {
    pub(crate) fn begin(agent: &'a Agent, handle: &Handle) -> Self {
        let mut map = agent.detaching.lock().expect("detaching lock");
        *map.entry(handle.clone()).or_default() += 1;
        Detaching {
            agent,
            handle: handle.clone(),
        }
    }
}

impl Drop for Detaching<'_> {
    fn drop(&mut self) {
        let mut map = self.agent.detaching.lock().expect("detaching lock");
        if let Some(n) = map.get_mut(&self.handle) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.handle);
            }
        }
    }
}
