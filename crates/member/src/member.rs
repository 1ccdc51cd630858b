//! The member: a node's side of the cluster, run beside its agent.
//!
//! Three loops share one state:
//! - **lease**: register, then renew every interval, reporting the usage of
//!   the node's blocks. Each renewal moves the *fence*: the node may hand
//!   out addresses of its granted blocks until `sent + ttl + grace − margin`,
//!   counted from when the renewal was *sent*, so it stops before the
//!   controller (which counts from when it received it) could give the
//!   blocks away;
//! - **watch**: the block map, nodes and cluster networks, applied to a
//!   [`ClusterView`]; after each batch of changes the node is synced to it
//!   (cluster networks defined, own blocks adopted, host-gw routes set);
//! - **tend**: after attaches and detaches and every interval, claims the
//!   next block of a pool ahead of need and gives back blocks that have been
//!   empty for a while (never the last of a pool).
//!
//! What goes wrong is shown in the agent's status, never hidden: the
//! controller out of reach and since when, the node fenced, peers that are
//! not on a directly connected subnet.

use crate::api::{ApiError, ControllerApi, Lease};
use crate::view::ClusterView;
use async_trait::async_trait;
use futures::StreamExt;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use trellis_agent::{Agent, ErrorClass, Event, Membership, MembershipError, NetworkMode};
use trellis_cluster::{BlockUsage, NodeSpec};
use trellis_route::PeerRoute;
use trellis_types::{NodeName, PoolName};

/// How a member behaves.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// What the node registers.
    pub node: NodeSpec,
    /// Claim the next block of a pool when fewer free addresses than this
    /// remain in the node's blocks of it.
    pub claim_ahead: u32,
    /// Give back a block that has been empty this long (not the node's last
    /// block of its pool).
    pub release_empty_after: Duration,
}

impl MemberConfig {
    /// Defaults: claim ahead under 8 free addresses; give empty blocks back
    /// after 10 minutes.
    pub fn new(node: NodeSpec) -> Self {
        MemberConfig {
            node,
            claim_ahead: 8,
            release_empty_after: Duration::from_secs(600),
        }
    }
}

#[derive(Default)]
struct State {
    lease: Option<Lease>,
    registered: bool,
    /// New addresses may be handed out until then.
    fence: Option<Instant>,
    /// Since when the controller has not answered, and its last error.
    trouble: Option<(Instant, String)>,
    /// What the last sync found wrong.
    sync_warnings: Vec<String>,
    /// Since when each of the node's blocks has been empty.
    empty_since: HashMap<IpNet, Instant>,
    /// What the last sync applied (to skip identical ones).
    synced: Option<Synced>,
    /// Blocks this node claimed, and when, until the block map shows them
    /// as its own: a sync must not take them for blocks the controller
    /// took back just because its view lags the claim.
    claimed: HashMap<IpNet, Instant>,
    /// Blocks this node gave back, and when, until the block map no longer
    /// shows them as its own: a sync must not adopt them again just because
    /// its view lags the release — the controller may give them to another
    /// node at once.
    released: HashMap<IpNet, Instant>,
}

/// How long a claimed block the view does not show yet is spared.
const CLAIM_SHOWS_WITHIN: Duration = Duration::from_secs(300);

#[derive(Clone, PartialEq, Eq)]
struct Synced {
    /// Whether the view has had the controller's snapshot (an empty view
    /// is not "no blocks are this node's").
    loaded: bool,
    prefixes: Vec<IpNet>,
    routes: Vec<PeerRoute>,
    mine: Vec<(PoolName, IpNet)>,
    networks: Vec<trellis_agent::NetworkSpec>,
}

/// A node's membership of the cluster (see the module docs).
pub struct Member {
    agent: Arc<Agent>,
    api: Arc<dyn ControllerApi>,
    cfg: MemberConfig,
    state: Mutex<State>,
    view: Mutex<ClusterView>,
    /// Serialises syncs and tending, which both change the node.
    busy: tokio::sync::Mutex<()>,
}

impl Member {
    /// A member for `agent`'s node, joined to it (the agent asks it for
    /// blocks and whether it may allocate). Call [`Member::run`] next.
    pub fn join(agent: Arc<Agent>, api: Arc<dyn ControllerApi>, cfg: MemberConfig) -> Arc<Self> {
        let m = Arc::new(Member {
            agent,
            api,
            cfg,
            state: Mutex::default(),
            view: Mutex::default(),
            busy: tokio::sync::Mutex::new(()),
        });
        m.agent.join(m.clone());
        m
    }

    fn me(&self) -> &NodeName {
        &self.cfg.node.name
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster as last heard of.
    pub fn view(&self) -> ClusterView {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs the lease, watch and tend loops until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::select! {
            () = shutdown => {}
            () = self.clone().lease_loop() => {}
            () = self.clone().watch_loop() => {}
            () = self.clone().tend_loop() => {}
        }
    }

    async fn lease_loop(self: Arc<Self>) {
        let mut backoff = Backoff::default();
        loop {
            let (registered, limit) = {
                let st = self.state();
                let interval = st.lease.map_or(Duration::from_secs(1), |l| l.interval);
                (st.registered, interval.max(Duration::from_secs(1)))
            };
            let usage = if registered {
                self.usage().await
            } else {
                Vec::new()
            };
            let sent = Instant::now();
            // A call may not outlast the interval: a controller that does
            // not answer is out of reach, and says so in time.
            let call = async {
                if registered {
                    self.api.keep_alive(self.me(), &usage).await.map(|_| None)
                } else {
                    self.api.register(&self.cfg.node).await.map(Some)
                }
            };
            let result = tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                Err(ApiError::Unreachable(format!(
                    "no answer within {} ms",
                    limit.as_millis()
                )))
            });
            let wait = {
                let mut st = self.state();
                match result {
                    Ok(lease) => {
                        if let Some(lease) = lease {
                            tracing::info!(node = %self.me(), ?lease, "registered with the controller");
                            st.lease = Some(lease);
                            st.registered = true;
                        }
                        let lease = st.lease.expect("a lease once registered");
                        st.fence = Some(sent + fence_after(&lease));
                        st.trouble = None;
                        backoff = Backoff::default();
                        lease.interval
                    }
                    Err(ApiError::NotRegistered(why)) => {
                        tracing::warn!(%why, "the controller does not know this node: registering again");
                        st.registered = false;
                        Duration::ZERO
                    }
                    Err(e) => {
                        let since = st.trouble.as_ref().map_or(sent, |(t, _)| *t);
                        tracing::warn!(error = %e, "controller call failed");
                        st.trouble = Some((since, e.to_string()));
                        let interval = st.lease.map_or(Duration::from_secs(1), |l| l.interval);
                        backoff.next().min(interval)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn watch_loop(self: Arc<Self>) {
        let mut backoff = Backoff::default();
        loop {
            let from = {
                let v = self.view.lock().unwrap_or_else(|e| e.into_inner());
                if v.revision == 0 { 0 } else { v.revision + 1 }
            };
            match self.api.watch(from).await {
                Ok(mut events) => {
                    while let Some(item) = events.next().await {
                        match item {
                            Ok(e) => {
                                self.view.lock().unwrap_or_else(|e| e.into_inner()).apply(e);
                                backoff = Backoff::default();
                                // A batch of changes (a claim is three
                                // writes) is synced once.
                                let mut ended = false;
                                while let Some(next) = events.now_or_never_ready() {
                                    match next {
                                        Some(Ok(e)) => {
                                            let mut v =
                                                self.view.lock().unwrap_or_else(|e| e.into_inner());
                                            v.apply(e);
                                        }
                                        _ => {
                                            ended = true;
                                            break;
                                        }
                                    }
                                }
                                self.sync().await;
                                if ended {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "controller watch ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "controller watch"),
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }

    async fn tend_loop(self: Arc<Self>) {
        let mut events = self.agent.subscribe();
        loop {
            let interval = self
                .state()
                .lease
                .map_or(Duration::from_secs(1), |l| l.interval);
            tokio::select! {
                e = events.recv() => match e {
                    Ok(Event::EndpointAttached(_) | Event::EndpointDetached(_)) => {}
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep(interval) => {}
            }
            self.tend().await;
            // A sync that left warnings is tried again (an unchanged one
            // is skipped).
            self.sync().await;
        }
    }

    /// Makes the node what the view says: the cluster's networks defined
    /// (and those gone, deleted), its own blocks adopted, host-gw routes
    /// to every other node's blocks.
    pub async fn sync(&self) {
        let _busy = self.busy.lock().await;
        let want = {
            let v = self.view.lock().unwrap_or_else(|e| e.into_inner());
            Synced {
                loaded: v.revision > 0,
                prefixes: v.pools.values().map(|p| p.spec.prefix).collect(),
                routes: v.peer_routes(self.me()),
                mine: v.my_blocks(self.me()),
                networks: v.network_specs(),
            }
        };
        // Before the controller's snapshot (a fresh start, the controller
        // not answering yet) the view is empty, which is not "no networks,
        // no blocks, no peers": nothing is taken down for it.
        if !want.loaded || self.state().synced.as_ref() == Some(&want) {
            return;
        }
        let mut warnings = Vec::new();
        if let Err(e) = self.agent.set_cluster_prefixes(want.prefixes.clone()).await {
            warnings.push(format!("cluster prefixes in nftables: {e}"));
        }
        self.sync_networks(&want, &mut warnings).await;
        self.adopt_mine(&want, &mut warnings).await;
        self.sync_routes(&want, &mut warnings).await;
        {
            let mut st = self.state();
            st.synced = warnings.is_empty().then_some(want);
            st.sync_warnings = warnings;
        }
    }

    async fn sync_networks(&self, want: &Synced, warnings: &mut Vec<String>) {
        for spec in &want.networks {
            if let Err(e) = self.agent.create_network(spec.clone()).await {
                warnings.push(format!("cluster network {:?}: {e}", spec.name.as_str()));
            }
        }
        for net in self.agent.networks() {
            let cluster_routed =
                net.spec.mode == NetworkMode::Routed && !net.spec.cluster_pools.is_empty();
            if !cluster_routed || want.networks.iter().any(|s| s.name == net.spec.name) {
                continue;
            }
            match self.agent.delete_network(net.spec.name.as_str()).await {
                Ok(()) => {
                    for (pool, block) in &want.mine {
                        if net.spec.cluster_pools.iter().any(|c| &c.name == pool) {
                            self.release(pool, *block, warnings).await;
                        }
                    }
                }
                Err(e) => warnings.push(format!(
                    "cluster network {:?} was deleted on the controller: {e}",
                    net.spec.name.as_str()
                )),
            }
        }
    }

    async fn adopt_mine(&self, want: &Synced, warnings: &mut Vec<String>) {
        for (pool, block) in &want.mine {
            if self.state().released.contains_key(block) {
                continue;
            }
            let local = self
                .view
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .local_pool(pool);
            let Some(local) = local else {
                continue;
            };
            if let Err(e) = self.agent.adopt_block(&local, *block).await {
                warnings.push(format!("block {block} of pool {pool}: {e}"));
            }
        }
        if want.loaded {
            self.drop_taken_back(want, warnings).await;
        }
    }

    /// Blocks in this node's IPAM that the controller does not count as
    /// its own (released while the node was out of contact past lease and
    /// grace, or by an operator): another node may hold them now, so none
    /// may give out another address here. An empty one is forgotten; one
    /// with addresses still in use is frozen (its fence stopped new
    /// addresses, not the old ones) and forgotten once empty.
    async fn drop_taken_back(&self, want: &Synced, warnings: &mut Vec<String>) {
        {
            let now = Instant::now();
            let mut st = self.state();
            st.claimed.retain(|b, at| {
                !want.mine.iter().any(|(_, m)| m == b) && now - *at < CLAIM_SHOWS_WITHIN
            });
            st.released.retain(|b, at| {
                want.mine.iter().any(|(_, m)| m == b) && now - *at < CLAIM_SHOWS_WITHIN
            });
        }
        for net in self.agent.networks().into_iter().filter(|n| n.granted()) {
            for (local, _) in net.pools() {
                if net.cluster_pool_of(local.as_str()).is_none() {
                    continue;
                }
                let blocks = match self.agent.ipam().block_usage(local.as_str()).await {
                    Ok(b) => b,
                    Err(e) => {
                        warnings.push(format!("blocks of pool {local} unreadable: {e}"));
                        continue;
                    }
                };
                for b in &blocks {
                    if want.mine.iter().any(|(_, m)| *m == b.cidr)
                        || self.state().claimed.contains_key(&b.cidr)
                    {
                        continue;
                    }
                    if b.used == 0 {
                        match self.agent.retire_block(&local, b.cidr).await {
                            Ok(true) => {
                                tracing::info!(block = %b.cidr, "forgot a block the controller no longer gives this node");
                                continue;
                            }
                            // An attach took an address in it meanwhile.
                            Ok(false) => {}
                            Err(e) => {
                                warnings.push(format!("block {}: {e}", b.cidr));
                                continue;
                            }
                        }
                    }
                    if let Err(e) = self.agent.freeze_block(&local, b.cidr).await {
                        warnings.push(format!("block {}: {e}", b.cidr));
                    }
                    warnings.push(format!(
                        "block {} holds addresses in use here, but the controller does not count it as this node's: no new addresses from it (`netctl ipam check` lists it)",
                        b.cidr
                    ));
                }
            }
        }
    }

    async fn sync_routes(&self, want: &Synced, warnings: &mut Vec<String>) {
        let mut routes = want.routes.clone();
        let vias: Vec<_> = {
            let mut v: Vec<_> = routes.iter().map(|r| r.via).collect();
            v.sort();
            v.dedup();
            v
        };
        match self.agent.off_link(&vias).await {
            Ok(off) if !off.is_empty() => {
                let view = self.view();
                for ip in &off {
                    let who = view
                        .nodes
                        .values()
                        .find(|n| {
                            n.record.spec.address_v4.map(Into::into) == Some(*ip)
                                || n.record.spec.address_v6.map(Into::into) == Some(*ip)
                        })
                        .map(|n| n.record.spec.name.to_string())
                        .unwrap_or_default();
                    warnings.push(format!(
                        "peer {who} ({ip}) is not on a directly connected subnet: no host-gw route to its blocks (a routed underlay needs BGP export)"
                    ));
                }
                routes.retain(|r| !off.contains(&r.via));
            }
            Ok(_) => {}
            Err(e) => warnings.push(format!("host routes unreadable: {e}")),
        }
        if let Err(e) = self.agent.set_peer_routes(routes).await {
            warnings.push(format!("peer routes: {e}"));
        }
    }

    async fn release(&self, pool: &PoolName, block: IpNet, warnings: &mut Vec<String>) {
        match self.api.release_block(self.me(), pool, block).await {
            Ok(()) => self.released(block),
            Err(e) => warnings.push(format!("block {block} of pool {pool} not given back: {e}")),
        }
    }

    /// Notes `block` as given back (see [`State::released`]).
    fn released(&self, block: IpNet) {
        self.state().released.insert(block, Instant::now());
    }

    /// Notes `block` as claimed (see [`State::claimed`]).
    fn claimed(&self, block: IpNet) {
        let mut st = self.state();
        st.released.remove(&block);
        st.claimed.insert(block, Instant::now());
    }

    /// The usage of every block the node holds, as the controller wants it
    /// (the agent's [`Agent::held_blocks`]; empty, which the controller
    /// reads as "unchanged", if the node's IPAM cannot be read).
    pub async fn usage(&self) -> Vec<BlockUsage> {
        match self.agent.held_blocks().await {
            Ok(held) => held
                .into_iter()
                .map(|b| BlockUsage {
                    prefix: b.prefix,
                    used: b.used,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "block usage unreadable: reported as unchanged");
                Vec::new()
            }
        }
    }

    /// Claims the next block of each granted pool running low, and gives
    /// back blocks empty for long enough.
    pub async fn tend(&self) {
        let _busy = self.busy.lock().await;
        if self.may_allocate().is_err() {
            return;
        }
        let mut warnings = Vec::new();
        for net in self.agent.networks() {
            if !net.granted() {
                continue;
            }
            for (local, _) in net.pools() {
                let Some(source) = net.cluster_pool_of(local.as_str()) else {
                    continue;
                };
                let Ok(blocks) = self.agent.ipam().block_usage(local.as_str()).await else {
                    continue;
                };
                let free: u32 = blocks.iter().map(|b| b.free).sum();
                if free < self.cfg.claim_ahead {
                    match self.api.claim_block(self.me(), &source.name).await {
                        Ok(b) => {
                            self.claimed(b.prefix);
                            tracing::info!(block = %b.prefix, pool = %source.name, free, "claimed a block ahead of need");
                            if let Err(e) = self.agent.adopt_block(&local, b.prefix).await {
                                warnings.push(format!("block {}: {e}", b.prefix));
                            }
                        }
                        Err(e) => {
                            warnings.push(format!("pool {} is low ({free} free): {e}", source.name))
                        }
                    }
                    continue;
                }
                self.give_back_empty(&local, &source.name, &blocks, free)
                    .await;
            }
        }
        if !warnings.is_empty() {
            self.state().sync_warnings.extend(warnings);
        }
    }

    async fn give_back_empty(
        &self,
        local: &PoolName,
        pool: &PoolName,
        blocks: &[trellis_ipam::BlockUse],
        free: u32,
    ) {
        let now = Instant::now();
        let due: Vec<_> = {
            let mut st = self.state();
            for b in blocks {
                if b.used > 0 {
                    st.empty_since.remove(&b.cidr);
                } else {
                    st.empty_since.entry(b.cidr).or_insert(now);
                }
            }
            blocks
                .iter()
                .filter(|b| {
                    st.empty_since
                        .get(&b.cidr)
                        .is_some_and(|t| now - *t >= self.cfg.release_empty_after)
                })
                .copied()
                .collect()
        };
        let mut left = blocks.len();
        let mut free = free;
        for b in due {
            if left <= 1 || free - b.free < self.cfg.claim_ahead {
                break;
            }
            match self.agent.retire_block(local, b.cidr).await {
                Ok(true) => {
                    left -= 1;
                    free -= b.free;
                    self.state().empty_since.remove(&b.cidr);
                    let mut warnings = Vec::new();
                    self.release(pool, b.cidr, &mut warnings).await;
                    tracing::info!(block = %b.cidr, %pool, "gave back an empty block");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, block = %b.cidr, "retire an empty block"),
            }
        }
    }

    /// What is wrong, now (the agent's status asks).
    fn current_warnings(&self) -> Vec<String> {
        let st = self.state();
        let mut w = Vec::new();
        let now = Instant::now();
        if !st.registered {
            w.push(match &st.trouble {
                Some((since, e)) => format!(
                    "cluster: not registered with the controller ({} s): {e}",
                    (now - *since).as_secs()
                ),
                None => "cluster: registering with the controller".to_owned(),
            });
        } else if let Some((since, e)) = &st.trouble {
            w.push(format!(
                "cluster: controller unreachable for {} s: {e}",
                (now - *since).as_secs()
            ));
        }
        if let Some(fence) = st.fence {
            if now >= fence {
                w.push("cluster: fenced: no lease renewal for too long; no new addresses until the controller answers".to_owned());
            } else if st.trouble.is_some() {
                w.push(format!(
                    "cluster: new addresses stop in {} s unless the controller answers (fencing)",
                    (fence - now).as_secs()
                ));
            }
        }
        w.extend(st.sync_warnings.iter().map(|s| format!("cluster: {s}")));
        w
    }
}

/// How long after a renewal was sent the node may go on handing out
/// addresses: the controller gives a silent node's blocks away no sooner
/// than `ttl + grace` after it *received* the renewal; the node stops a
/// margin (a tenth of that, at least 1 s) before.
fn fence_after(lease: &Lease) -> Duration {
    let total = lease.ttl + lease.grace;
    let margin = (total / 10).max(Duration::from_secs(1)).min(total / 2);
    total - margin
}

#[async_trait]
impl Membership for Member {
    fn may_allocate(&self) -> Result<(), MembershipError> {
        let st = self.state();
        match st.fence {
            None => Err(MembershipError {
                class: ErrorClass::Unavailable,
                message: "not registered with the controller yet (no blocks can be used)".into(),
            }),
            Some(fence) if Instant::now() >= fence => Err(MembershipError {
                class: ErrorClass::Unavailable,
                message: format!(
                    "fenced: no lease renewal since {} s ago; the controller may give this node's blocks away, so no new addresses until it answers",
                    st.trouble
                        .as_ref()
                        .map_or(0, |(t, _)| (Instant::now() - *t).as_secs())
                ),
            }),
            Some(_) => Ok(()),
        }
    }

    async fn claim_block(&self, pool: &PoolName) -> Result<IpNet, MembershipError> {
        self.may_allocate()?;
        let b = self
            .api
            .claim_block(self.me(), pool)
            .await
            .map_err(membership_error)?;
        // Before the agent adopts it: a sync that finds it in the IPAM
        // finds it here too.
        self.claimed(b.prefix);
        Ok(b.prefix)
    }

    async fn release_block(&self, pool: &PoolName, block: IpNet) -> Result<(), MembershipError> {
        self.api
            .release_block(self.me(), pool, block)
            .await
            .map_err(membership_error)?;
        self.released(block);
        Ok(())
    }

    fn warnings(&self) -> Vec<String> {
        self.current_warnings()
    }
}

fn membership_error(e: ApiError) -> MembershipError {
    MembershipError {
        class: e.class(),
        message: e.to_string(),
    }
}

/// 100 ms doubling to 5 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = Duration::from_millis(100 << self.0.min(6)).min(Duration::from_secs(5));
        self.0 += 1;
        d
    }
}

/// Takes the stream's next item only if it is ready now.
trait NowOrNever {
    type Item;
    fn now_or_never_ready(&mut self) -> Option<Option<Self::Item>>;
}

impl<S: futures::Stream + Unpin> NowOrNever for S {
    type Item = S::Item;
    fn now_or_never_ready(&mut self) -> Option<Option<S::Item>> {
        futures::FutureExt::now_or_never(self.next())
    }
}
