//! The IPAM check (what an operator may need to release) and the invariant
//! checker (what must never be true, read from the whole store).

use crate::model::{BlockRecord, IpamProblem, NodeRecord, Pool, ProblemKind, decode};
use crate::reader::NodeReader;
use crate::{Block, Controller, Error, Node, Snapshot, keys};
use ipnet::IpNet;
use std::collections::BTreeMap;
use trellis_store::KvStore;
use trellis_types::{InvalidInput, NodeName, PoolName};

impl Controller {
    /// Blocks held by dead or unknown nodes, and usage reported for blocks
    /// the reporting node does not hold: what the controller's own records
    /// show (see [`Controller::check_ipam_with`] for the nodes' side).
    pub async fn check_ipam(&self) -> Result<Vec<IpamProblem>, Error> {
        self.check_ipam_with(None).await
    }

    /// [`Controller::check_ipam`], and, with `nodes`, the block map
    /// compared with what each live node's own IPAM holds, read through
    /// `nodes` ([`crate::reader`]): blocks the controller gives a node that
    /// the node does not hold, blocks a node holds that the controller does
    /// not give it, and nodes that could not be read. Nodes that registered
    /// no Agent API address are not read.
    pub async fn check_ipam_with(
        &self,
        nodes: Option<&dyn NodeReader>,
    ) -> Result<Vec<IpamProblem>, Error> {
        let snap = self.snapshot().await?;
        let mut out = self.store_problems(&snap);
        if let Some(reader) = nodes {
            out.extend(crate::reader::node_problems(&snap, reader).await);
        }
        out.sort_by(|a, b| (a.kind, a.prefix, &a.node).cmp(&(b.kind, b.prefix, &b.node)));
        Ok(out)
    }

    /// The problems the store alone shows (see [`Controller::check_ipam`]).
    fn store_problems(&self, snap: &Snapshot) -> Vec<IpamProblem> {
        let nodes: BTreeMap<&NodeName, _> = snap
            .nodes
            .iter()
            .map(|n| (&n.record.spec.name, n))
            .collect();
        let mut out: Vec<IpamProblem> = snap
            .blocks
            .iter()
            .filter_map(|b| self.owner_problem(b, nodes.get(&b.record.node).copied()))
            .collect();
        out.extend(usage_problems(snap));
        out
    }

    /// What is wrong with the owner of `b`, `owner` (`None`: not registered).
    fn owner_problem(&self, b: &Block, owner: Option<&Node>) -> Option<IpamProblem> {
        let problem = |kind, detail: String, releasable| IpamProblem {
            kind,
            pool: Some(b.pool.clone()),
            prefix: Some(b.prefix),
            node: b.record.node.clone(),
            detail,
            releasable,
        };
        let who = b.record.node.as_str();
        match owner {
            None => Some(problem(
                ProblemKind::UnknownOwner,
                format!(
                    "block {} is held by node {who:?}, which is not registered",
                    b.prefix
                ),
                true,
            )),
            Some(n) if n.record.dead => {
                let past_grace = self.config.lease_ttl + self.config.grace;
                let over = n.lease_age >= past_grace;
                Some(problem(
                    ProblemKind::DeadOwner,
                    format!(
                        "block {} is held by dead node {who:?} (lease lapsed {} s ago; released {})",
                        b.prefix,
                        n.lease_age.saturating_sub(self.config.lease_ttl).as_secs(),
                        if over {
                            "now"
                        } else {
                            "after the grace period"
                        }
                    ),
                    over,
                ))
            }
            Some(_) => None,
        }
    }

    /// Releases the blocks [`Controller::check_ipam`] finds releasable: all
    /// of them, or those in `only` (each of which must be).
    pub async fn release_ipam(&self, only: &[IpNet]) -> Result<Vec<IpNet>, Error> {
        let problems = self.check_ipam().await?;
        let releasable: BTreeMap<IpNet, &IpamProblem> = problems
            .iter()
            .filter(|p| p.releasable)
            .filter_map(|p| Some((p.prefix?, p)))
            .collect();
        for prefix in only {
            if !releasable.contains_key(prefix) {
                return Err(InvalidInput::new(
                    "prefixes",
                    prefix,
                    "not a releasable block (see CheckIpam)",
                )
                .into());
            }
        }
        let mut released = Vec::new();
        for (prefix, p) in &releasable {
            if !only.is_empty() && !only.contains(prefix) {
                continue;
            }
            let pool = p.pool.as_ref().expect("blocks have pools");
            self.force_release(pool, *prefix).await?;
            tracing::warn!(%prefix, node = %p.node, "block released by IPAM release");
            released.push(*prefix);
        }
        Ok(released)
    }
}

/// Usage a node reported for blocks it does not hold.
fn usage_problems(snap: &Snapshot) -> Vec<IpamProblem> {
    let holder: BTreeMap<IpNet, &NodeName> = snap
        .blocks
        .iter()
        .map(|b| (b.prefix, &b.record.node))
        .collect();
    let mut out = Vec::new();
    for n in &snap.nodes {
        let name = &n.record.spec.name;
        for (prefix, used) in &n.record.usage {
            if *used == 0 || holder.get(prefix) == Some(&name) {
                continue;
            }
            let pool = snap
                .pools
                .iter()
                .find(|p| p.spec.prefix.contains(prefix))
                .map(|p| p.spec.name.clone());
            let other = holder
                .get(prefix)
                .map(|h| format!(" (node {:?} does)", h.as_str()))
                .unwrap_or_default();
            out.push(IpamProblem {
                kind: ProblemKind::UsageWithoutBlock,
                pool,
                prefix: Some(*prefix),
                node: name.clone(),
                detail: format!(
                    "node {:?} reports {used} addresses in use in {prefix}, which it does not hold{other}",
                    name.as_str(),
                ),
                releasable: false,
            });
        }
    }
    out
}

/// Reads the whole store and lists every broken invariant, one line each
/// (empty: all hold): each block lies in its pool at the pool's block size
/// and is held by a registered node; each pool's count of held blocks and
/// each node's count per pool match the blocks; no node holds more of a
/// pool than its cap; no two pools overlap. A block can never have two
/// owners by construction (one key per block); the checker proves the
/// counts that guard the cap and pool deletion never drift.
pub async fn check_invariants(store: &dyn KvStore) -> Result<Vec<String>, Error> {
    let listing = store.list(keys::ROOT).await?;
    let mut pools = BTreeMap::<PoolName, Pool>::new();
    let mut nodes = BTreeMap::<NodeName, NodeRecord>::new();
    let mut blocks = Vec::<(PoolName, IpNet, BlockRecord)>::new();
    for (k, v) in &listing.entries {
        match keys::parse(k) {
            Some(keys::Key::Pool(n)) => {
                pools.insert(n, decode(k, &v.value)?);
            }
            Some(keys::Key::Node(n)) => {
                nodes.insert(n, decode(k, &v.value)?);
            }
            Some(keys::Key::Block(p, b)) => blocks.push((p, b, decode(k, &v.value)?)),
            _ => {}
        }
    }
    let mut bad = Vec::new();
    let mut pool_held = BTreeMap::<&PoolName, u64>::new();
    let mut node_held = BTreeMap::<(&NodeName, &PoolName), u32>::new();
    for (pool, prefix, b) in &blocks {
        match pools.get(pool) {
            None => bad.push(format!(
                "block {prefix} is in pool {pool}, which does not exist"
            )),
            Some(p) if !p.spec.holds_block(*prefix) => bad.push(format!(
                "block {prefix} is not a block of pool {pool} ({} in /{})",
                p.spec.prefix, p.spec.block_len
            )),
            Some(_) => {}
        }
        if !nodes.contains_key(&b.node) {
            bad.push(format!(
                "block {prefix} is held by unregistered node {}",
                b.node
            ));
        }
        *pool_held.entry(pool).or_default() += 1;
        *node_held.entry((&b.node, pool)).or_default() += 1;
    }
    for (name, p) in &pools {
        let n = pool_held.get(name).copied().unwrap_or(0);
        if p.held != n {
            bad.push(format!(
                "pool {name} counts {} blocks held, {n} are",
                p.held
            ));
        }
        for (other, q) in pools
            .range::<PoolName, _>((std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded))
        {
            if p.spec.prefix.contains(&q.spec.prefix.network())
                || q.spec.prefix.contains(&p.spec.prefix.network())
            {
                bad.push(format!("pools {name} and {other} overlap"));
            }
        }
    }
    for (name, n) in &nodes {
        for (pool, count) in &n.held {
            let real = node_held.get(&(name, pool)).copied().unwrap_or(0);
            if *count != real {
                bad.push(format!(
                    "node {name} counts {count} blocks of pool {pool}, holds {real}"
                ));
            }
        }
    }
    for ((node, pool), count) in &node_held {
        if nodes
            .get(*node)
            .is_some_and(|n| !n.held.contains_key(*pool))
        {
            bad.push(format!(
                "node {node} counts no block of pool {pool}, holds {count}"
            ));
        }
        if let Some(p) = pools.get(*pool)
            && *count > p.spec.max_blocks_per_node
        {
            bad.push(format!(
                "node {node} holds {count} blocks of pool {pool}, over its cap {}",
                p.spec.max_blocks_per_node
            ));
        }
    }
    Ok(bad)
}
