//! Watch: a snapshot of the cluster at a revision, then every change after
//! it, typed. Changes are at store revisions, so a watcher resumes from the
//! revision after the last one it saw; one that fell behind the store's
//! history gets a fresh snapshot marked `reset`. Every watch follows the
//! controller's one store watch (`crate::hub`); one from before it began
//! reads the store itself until it catches up.

use crate::blocks::block_view;
use crate::hub::{Hub, Subscription};
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

/// How many typed changes the controller's watch hub keeps, for watches
/// that resume from a recent revision.
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
    ///
    /// The changes come from the controller's one store watch (its hub,
    /// started by the first watch) when it holds every change from the
    /// revision asked for. A watch from further back reads the store itself
    /// until it reaches what the hub holds, then follows the hub. A watch
    /// from a revision the store no longer holds gets a fresh snapshot
    /// marked `reset`.
    pub async fn watch(self: &Arc<Self>, from_revision: u64) -> Result<EventStream, Error> {
        if from_revision == 0 {
            let s = self.shared_snapshot().await?;
            match self.follow(Some(Arc::clone(&s)), s.revision + 1).await {
                // The shared snapshot is older than the store's history:
                // a fresh one, as for a compacted revision.
                Err(Error::Store(trellis_store::Error::Compacted { .. })) => {}
                other => return other,
            }
            let s = Arc::new(self.snapshot().await?);
            return self.follow(Some(Arc::clone(&s)), s.revision + 1).await;
        }
        match self.follow(None, from_revision).await {
            Err(Error::Store(trellis_store::Error::Compacted { .. })) => {
                let mut s = self.snapshot().await?;
                s.reset = true;
                let s = Arc::new(s);
                self.follow(Some(Arc::clone(&s)), s.revision + 1).await
            }
            other => other,
        }
    }

    /// `first`, then the changes from revision `from`: from the hub, or
    /// from the store until the hub holds them. Fails with the store's
    /// [`trellis_store::Error::Compacted`] when `from` is past its history.
    async fn follow(
        self: &Arc<Self>,
        first: Option<Arc<Snapshot>>,
        from: u64,
    ) -> Result<EventStream, Error> {
        // Gives the hub a turn first: one whose store watch has already
        // failed, but which has not run since, would otherwise be judged
        // able to serve, and cut this watcher off at once.
        tokio::task::yield_now().await;
        let running = self.lock_hub().clone();
        let sub = match running.and_then(|h| h.subscribe(from)) {
            Some(sub) => sub,
            None => self.start_hub(from).await?,
        };
        let Some(join) = sub.behind() else {
            return Ok(self.stream(first, None, sub));
        };
        // The hub began after `from`: read the store up to where it began.
        let events = self.store.watch(keys::ROOT, from).await?;
        Ok(self.stream(first, Some((events, join)), sub))
    }

    /// Joins the running hub, or starts one at `from` (one at a time: the
    /// watches that arrive meanwhile join it).
    async fn start_hub(self: &Arc<Self>, from: u64) -> Result<Subscription, Error> {
        let _turn = self.hub_start.lock().await;
        let running = self.lock_hub().clone();
        if let Some(sub) = running.and_then(|h| h.subscribe(from)) {
            return Ok(sub);
        }
        let events = self.store.watch(keys::ROOT, from).await?;
        let (hub, sub) = Hub::start(
            Arc::downgrade(self),
            from,
            events,
            TYPED_KEPT,
            self.config.watch_buffer,
        );
        *self.lock_hub() = Some(hub);
        Ok(sub)
    }

    fn lock_hub(&self) -> std::sync::MutexGuard<'_, Option<Arc<Hub>>> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the hub (see [`Controller::take_office`]); the next watch
    /// starts another.
    pub(crate) fn stop_hub(&self) {
        if let Some(hub) = self.lock_hub().take() {
            hub.stop();
        }
    }

    fn stream(
        self: &Arc<Self>,
        first: Option<Arc<Snapshot>>,
        own: Option<(trellis_store::WatchStream, u64)>,
        sub: Subscription,
    ) -> EventStream {
        let follow = Follow {
            me: Arc::clone(self),
            own,
            sub,
            done: false,
        };
        let changes = futures::stream::unfold(follow, Follow::next);
        let head = futures::stream::iter(first.map(|s| Ok(Event::Snapshot(s))));
        Box::pin(head.chain(changes))
    }

    /// The typed change of one store event; `None` for keys that are not
    /// the cluster's objects (guards).
    pub(crate) async fn change(&self, e: WatchEvent) -> Result<Option<Event>, Error> {
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

/// A watch's changes after its snapshot: its own store watch while it is
/// behind the hub (`own`, with the revision from which the hub holds every
/// change), then the hub's.
struct Follow {
    me: Arc<Controller>,
    own: Option<(trellis_store::WatchStream, u64)>,
    sub: Subscription,
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, Error>, Self)> {
        if self.done {
            return None;
        }
        let item = match self.own_next().await {
            Some(item) => item,
            None if self.done => return None,
            None => self.sub.next().await,
        };
        // An error ends the watch: the watcher watches again from the
        // revision after the last it saw.
        self.done = item.is_err();
        Some((item, self))
    }

    /// The next change from the watch's own store watch; `None` once it
    /// has reached the hub's changes (or ended: `done`).
    async fn own_next(&mut self) -> Option<Result<Event, Error>> {
        let (events, join) = self.own.as_mut()?;
        loop {
            match events.next().await {
                Some(Ok(e)) if e.revision() < *join => match self.me.change(e).await {
                    Ok(Some(c)) => return Some(Ok(c)),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                },
                // The hub holds this change and every one after.
                Some(Ok(_)) => {
                    self.own = None;
                    return None;
                }
                // Fell behind the store's history mid-stream: the watcher
                // watches again, and gets a fresh snapshot.
                Some(Err(trellis_store::Error::Compacted { requested, .. })) => {
                    return Some(Err(Error::Compacted(requested)));
                }
                Some(Err(e)) => return Some(Err(e.into())),
                None => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}
