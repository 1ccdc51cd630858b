//! The controller: its configuration, its leases, and the read helpers the
//! operations share.

use crate::model::{NodeRecord, Pool, decode};
use crate::{Error, keys};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use trellis_store::{KvStore, Versioned};
use trellis_types::{NodeName, PoolName};

/// Default lease time to live: a node renews every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Default grace after a lease lapses before a dead node's blocks go back.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);

/// Default of [`Config::watch_buffer`]: more than a thousand claims.
pub const DEFAULT_WATCH_BUFFER: usize = 4096;

/// How the controller behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// A node not heard from for this long is dead.
    pub lease_ttl: Duration,
    /// A dead node's blocks go back to their pools this long after its
    /// lease lapsed (it keeps them if it comes back before).
    pub grace: Duration,
    /// Compare-and-swap attempts before [`Error::Contention`].
    pub max_attempts: u32,
    /// How many changes a watcher may fall behind the controller's one
    /// watch of the store before it is cut off ([`Error::WatchEnded`]; it
    /// watches again from where it was), so that no watcher slows the
    /// others.
    pub watch_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lease_ttl: DEFAULT_LEASE_TTL,
            grace: DEFAULT_GRACE,
            max_attempts: 64,
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }
}

/// The cluster's authority over pools, cluster networks, nodes and block
/// ownership, over any [`KvStore`]. Cheap to share behind an [`Arc`].
pub struct Controller {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) config: Config,
    /// When each node last renewed its lease, as this controller saw it. A
    /// node not in the map has not been heard from since the controller
    /// started, and is given a full lease from then: a controller restart
    /// only ever delays a node's death, never hastens it.
    leases: Mutex<HashMap<NodeName, Instant>>,
    /// The usage each node last reported, per block: advice, kept in memory
    /// only, so that a renewal is not a store write broadcast to every
    /// watcher (a controller that restarts knows it again within one
    /// renewal interval).
    usage: Mutex<HashMap<NodeName, std::collections::BTreeMap<ipnet::IpNet, u32>>>,
    /// The last snapshot read for a watch, shared by the watches that open
    /// while it is fresh (see [`Controller::shared_snapshot`]).
    pub(crate) shared: tokio::sync::Mutex<Option<(Instant, Arc<crate::Snapshot>)>>,
    /// The one store watch every watch of the cluster follows, once the
    /// first watch started it (see `crate::hub`).
    pub(crate) hub: Mutex<Option<Arc<crate::hub::Hub>>>,
    /// Held while a hub starts, so that watches arriving together start
    /// one, not one each.
    pub(crate) hub_start: tokio::sync::Mutex<()>,
    /// Since when a node not heard from has its lease counted: the start,
    /// or the moment this replica last took office.
    started: Mutex<Instant>,
    /// One lock per pool, held across a claim's or a release's read and
    /// commit. The controller in office is the only writer of blocks, so
    /// claims of one pool taking turns here never conflict in the store:
    /// without it, concurrent claimers all read the same pool revision and
    /// all but one lose the compare-and-swap, which on a networked store
    /// (etcd: milliseconds per attempt) ends in refusals under load. The
    /// compare-and-swap stays the guard against any other writer.
    pool_locks: Mutex<HashMap<PoolName, Arc<tokio::sync::Mutex<()>>>>,
}

impl Controller {
    /// A controller over `store`.
    pub fn new(store: Arc<dyn KvStore>, config: Config) -> Self {
        Controller {
            store,
            config,
            leases: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            shared: tokio::sync::Mutex::new(None),
            hub: Mutex::new(None),
            hub_start: tokio::sync::Mutex::new(()),
            started: Mutex::new(Instant::now()),
            pool_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store it keeps its state in.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// Records a renewal of `node`'s lease now.
    pub(crate) fn renew(&self, node: &NodeName) {
        self.lock_leases().insert(node.clone(), Instant::now());
    }

    /// Forgets `node`'s lease.
    pub(crate) fn forget_lease(&self, node: &NodeName) {
        self.lock_leases().remove(node);
    }

    /// How long since `node` last renewed its lease.
    pub(crate) fn lease_age(&self, node: &NodeName) -> Duration {
        let last = self.lock_leases().get(node).copied();
        last.unwrap_or_else(|| *self.started.lock().unwrap_or_else(|e| e.into_inner()))
            .elapsed()
    }

    /// Forgets every renewal seen and counts leases from `now`.
    pub(crate) fn restart_leases(&self, now: Instant) {
        self.lock_leases().clear();
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Records the usage `node` reported.
    pub(crate) fn set_usage(
        &self,
        node: &NodeName,
        usage: std::collections::BTreeMap<ipnet::IpNet, u32>,
    ) {
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.clone(), usage);
    }

    /// The usage `node` last reported (empty: none since this controller
    /// started).
    pub(crate) fn usage_of(
        &self,
        node: &NodeName,
    ) -> std::collections::BTreeMap<ipnet::IpNet, u32> {
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets `node`'s usage of `blocks` (released).
    pub(crate) fn forget_usage(&self, node: &NodeName, blocks: &[ipnet::IpNet]) {
        if let Some(u) = self
            .usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(node)
        {
            for b in blocks {
                u.remove(b);
            }
        }
    }

    /// Takes `pool`'s turn: claims and releases of one pool run one at a
    /// time (see the field).
    pub(crate) async fn pool_turn(&self, pool: &PoolName) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .pool_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pool.clone())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<NodeName, Instant>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `step` until it does not fail with a store conflict, at most
    /// `max_attempts` times, backing off a little (with jitter) between
    /// attempts so that many claimers of one pool take turns. A write whose
    /// outcome was lost ([`trellis_store::Error::Indeterminate`], etcd) is
    /// tried again the same way: every step reads before it writes and
    /// writes by compare-and-swap, so the next attempt sees the lost write
    /// if it was applied (and a claim answers it, see `claim_block`).
    pub(crate) async fn retry<T, F>(
        &self,
        what: impl Fn() -> String,
        mut step: impl FnMut() -> F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        for attempt in 0..self.config.max_attempts {
            match step().await {
                Err(Error::Store(e)) if e.is_conflict() || e.is_indeterminate() => {
                    if e.is_indeterminate() {
                        tracing::warn!(error = %e, "a write's outcome was lost: reading again");
                    }
                    backoff(attempt).await;
                }
                other => return other,
            }
        }
        Err(Error::Contention {
            what: what(),
            attempts: self.config.max_attempts,
        })
    }

    /// Pool `name` and its revision.
    pub(crate) async fn read_pool(&self, name: &PoolName) -> Result<(Pool, u64), Error> {
        let key = keys::pool(name);
        let v = self.store.get(&key).await?;
        let v = v.ok_or_else(|| Error::NotFound(format!("pool {:?}", name.as_str())))?;
        Ok((decode(&key, &v.value)?, v.revision))
    }

    /// Node `name` and its revision, if registered.
    pub(crate) async fn read_node(
        &self,
        name: &NodeName,
    ) -> Result<Option<(NodeRecord, u64)>, Error> {
        let key = keys::node(name);
        match self.store.get(&key).await? {
            Some(Versioned { value, revision }) => Ok(Some((decode(&key, &value)?, revision))),
            None => Ok(None),
        }
    }

    /// Node `name` and its revision; NOT_FOUND if not registered.
    pub(crate) async fn must_read_node(&self, name: &NodeName) -> Result<(NodeRecord, u64), Error> {
        self.read_node(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("node {:?}", name.as_str())))
    }
}

/// Sleeps a random time under a cap that doubles with each attempt (1 ms
/// up to 64 ms).
async fn backoff(attempt: u32) {
    use std::hash::{BuildHasher, RandomState};
    let cap_us = 1000u64 << attempt.min(6);
    let jitter = RandomState::new().hash_one(attempt) % cap_us;
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// Unix time now, in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
