//! Watch: a snapshot of the cluster at a revision, then every change after
//! it, typed. Built on the store's own watch, so a watcher resumes from the
//! revision after the last one it saw; one that fell behind the store's
//! history gets a fresh snapshot marked `reset`.

use crate::blocks::block_view;
use crate::model::{Block, BlockRecord, ClusterNetwork, Node, NodeRecord, Pool, decode};
use crate::{Controller, Error, keys};
use futures::{Stream, StreamExt};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use trellis_store::WatchEvent;
use trellis_types::{NetworkName, NodeName, PoolName};

/// The whole cluster at one store revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The revision it was read at; changes follow from the next.
    pub revision: u64,
    /// It replaces what the watcher held (its revision was compacted away).
    pub reset: bool,
    /// Pools.
    pub pools: Vec<Pool>,
    /// Cluster networks.
    pub networks: Vec<ClusterNetwork>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Blocks.
    pub blocks: Vec<Block>,
}

/// How long a snapshot read for one watch is given to the watches that open
/// after it. A watch replays every change after its snapshot's revision, so
/// an older snapshot is as correct as a new one, only followed by more
/// changes; sharing it means a thousand nodes that (re)connect at once cost
/// one read of the store and one copy of the cluster, not a thousand.
pub const SHARED_SNAPSHOT_AGE: Duration = Duration::from_secs(1);

/// How many typed changes are kept for the watches behind the first.
pub const TYPED_KEPT: usize = 1024;

/// One change after a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A pool was written.
    Pool(Pool),
    /// A pool was deleted.
    PoolDeleted(PoolName),
    /// A cluster network was written.
    Network(ClusterNetwork),
    /// A cluster network was deleted.
    NetworkDeleted(NetworkName),
    /// A node was written (registered, renewed with new usage, drained,
    /// died, came back).
    Node(Node),
    /// A node was removed.
    NodeDeleted(NodeName),
    /// A block was claimed.
    Block(Block),
    /// A block was released.
    BlockDeleted(PoolName, IpNet),
}

/// What a watch yields: the first item is a snapshot when one was asked
/// for (or the revision was compacted), then changes with their revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The whole cluster (shared by the watches that opened at once).
    Snapshot(Arc<Snapshot>),
    /// One change, at this revision.
    Change(u64, Change),
}

/// The stream of a watch.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>;

impl Controller {
    /// The whole cluster at one revision.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let listing = self.store.list(keys::ROOT).await?;
        let mut s = Snapshot {
            revision: listing.revision,
            ..Snapshot::default()
        };
        let mut nodes = BTreeMap::<NodeName, NodeRecord>::new();
        let mut blocks = Vec::new();
        for (k, v) in &listing.entries {
            match keys::parse(k) {
                Some(keys::Key::Pool(_)) => s.pools.push(decode(k, &v.value)?),
                Some(keys::Key::Network(_)) => s.networks.push(ClusterNetwork {
                    spec: decode(k, &v.value)?,
                    revision: v.revision,
                }),
                Some(keys::Key::Node(name)) => {
                    nodes.insert(name, decode(k, &v.value)?);
                }
                Some(keys::Key::Block(pool, prefix)) => {
                    blocks.push((pool, prefix, decode::<BlockRecord>(k, &v.value)?));
                }
                None => {}
            }
        }
        s.blocks = blocks
            .into_iter()
            .map(|(pool, prefix, r)| {
                let owner = nodes.get(&r.node);
                block_view(pool, prefix, r, owner)
            })
            .collect();
        s.nodes = nodes.into_values().map(|r| self.view(r)).collect();
        Ok(s)
    }

    /// A snapshot for a watch: the last one read, if it is younger than
    /// [`SHARED_SNAPSHOT_AGE`], else a new one. Watches that open at once
    /// wait for one read and share it.
    async fn shared_snapshot(&self) -> Result<Arc<Snapshot>, Error> {
        let mut shared = self.shared.lock().await;
        if let Some((at, s)) = shared.as_ref()
            && at.elapsed() < SHARED_SNAPSHOT_AGE
        {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(self.snapshot().await?);
        *shared = Some((Instant::now(), Arc::clone(&s)));
        Ok(s)
    }

    /// Watches the cluster: from `from_revision` (`0`: a snapshot first,
    /// then changes from the revision after it).
    pub async fn watch(self: &Arc<Self>, from_revision: u64) -> Result<EventStream, Error> {
        if from_revision == 0 {
            let s = self.shared_snapshot().await?;
            match self.store.watch(keys::ROOT, s.revision + 1).await {
                Ok(w) => return Ok(self.stream(Some(s), w)),
                // The shared snapshot is older than the store's history:
                // a fresh one, as for a compacted revision.
                Err(trellis_store::Error::Compacted { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let s = Arc::new(self.snapshot().await?);
            let w = self.store.watch(keys::ROOT, s.revision + 1).await?;
            return Ok(self.stream(Some(s), w));
        }
        match self.store.watch(keys::ROOT, from_revision).await {
            Ok(w) => Ok(self.stream(None, w)),
            Err(trellis_store::Error::Compacted { .. }) => {
                let mut s = self.snapshot().await?;
                s.reset = true;
                let w = self.store.watch(keys::ROOT, s.revision + 1).await?;
                Ok(self.stream(Some(Arc::new(s)), w))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn stream(
        self: &Arc<Self>,
        first: Option<Arc<Snapshot>>,
        events: trellis_store::WatchStream,
    ) -> EventStream {
        let me = Arc::clone(self);
        let changes = events
            .then(move |e| {
                let me = Arc::clone(&me);
                async move {
                    match e {
                        Ok(e) => me.typed_change(e).await,
                        // Fell behind the store's history mid-stream: the
                        // watcher watches again from 0 (a fresh snapshot).
                        Err(trellis_store::Error::Compacted { requested, .. }) => {
                            Err(Error::Compacted(requested))
                        }
                        Err(e) => Err(e.into()),
                    }
                }
            })
            .filter_map(|c| async move { c.transpose() });
        let head = futures::stream::iter(first.map(|s| Ok(Event::Snapshot(s))));
        Box::pin(head.chain(changes))
    }

    /// [`Controller::change`], done once per revision for all watches: a
    /// block's change reads its owner from the store, and a thousand
    /// watching nodes would read it a thousand times. The last
    /// [`TYPED_KEPT`] are kept; a watch further behind types its own.
    async fn typed_change(&self, e: WatchEvent) -> Result<Option<Event>, Error> {
        let rev = e.revision();
        {
            let typed = self.lock_typed();
            if let Ok(i) = typed.binary_search_by_key(&rev, |(r, _)| *r) {
                return Ok(typed[i].1.clone());
            }
        }
        let c = self.change(e).await?;
        let mut typed = self.lock_typed();
        // Watches type a revision at about the same time; keep it once, in
        // order (one that typed a revision late does not reorder).
        if typed.back().is_none_or(|(r, _)| *r < rev) {
            typed.push_back((rev, c.clone()));
            if typed.len() > TYPED_KEPT {
                typed.pop_front();
            }
        }
        Ok(c)
    }

    fn lock_typed(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, Option<Event>)>> {
        self.typed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The typed change of one store event; `None` for keys that are not
    /// the cluster's objects (guards).
    async fn change(&self, e: WatchEvent) -> Result<Option<Event>, Error> {
        let rev = e.revision();
        let Some(key) = keys::parse(e.key()) else {
            return Ok(None);
        };
        let change = match (e, key) {
            (WatchEvent::Delete { .. }, keys::Key::Pool(n)) => Change::PoolDeleted(n),
            (WatchEvent::Delete { .. }, keys::Key::Network(n)) => Change::NetworkDeleted(n),
            (WatchEvent::Delete { .. }, keys::Key::Node(n)) => Change::NodeDeleted(n),
            (WatchEvent::Delete { .. }, keys::Key::Block(p, b)) => Change::BlockDeleted(p, b),
            (WatchEvent::Put { key, value, .. }, keys::Key::Pool(_)) => {
                Change::Pool(decode(&key, &value)?)
            }
            (WatchEvent::Put { key, value, .. }, keys::Key::Network(_)) => {
                Change::Network(ClusterNetwork {
                    spec: decode(&key, &value)?,
                    revision: rev,
                })
            }
            (WatchEvent::Put { key, value, .. }, keys::Key::Node(_)) => {
                Change::Node(self.view(decode(&key, &value)?))
            }
            (WatchEvent::Put { key, value, .. }, keys::Key::Block(pool, prefix)) => {
                let record: BlockRecord = decode(&key, &value)?;
                let owner = self.read_node(&record.node).await?.map(|(n, _)| n);
                Change::Block(block_view(pool, prefix, record, owner.as_ref()))
            }
        };
        Ok(Some(Event::Change(rev, change)))
    }
}
