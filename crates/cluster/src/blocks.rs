//! Blocks: claimed by compare-and-swap, released the same way.
//!
//! A claim commits three writes as one: the block's key (expected absent,
//! so a block never has two owners), the pool's record (its count of held
//! blocks, so a pool is never deleted under a claim) and the node's record
//! (its count per pool, so the per-node cap holds under concurrent claims).

use crate::controller::unix_ms;
use crate::model::{Block, BlockRecord, NodeRecord, NodeState, PoolMode, decode, encode};
use crate::{Controller, Error, keys};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use trellis_store::{Expect, Op};
use trellis_types::{NodeName, PoolName};

impl Controller {
    /// Claims a free block of `pool` for `node`. A node holds at most one
    /// block of a bridge pool: claiming again answers the one it holds.
    pub async fn claim_block(&self, node: &NodeName, pool: &PoolName) -> Result<Block, Error> {
        let what = || format!("pool {:?}", pool.as_str());
        let _turn = self.pool_turn(pool).await;
        // The last attempt's write, in case its outcome was lost: the next
        // attempt finds it applied, and answers it instead of claiming a
        // second block.
        let tried: std::sync::Mutex<Option<(IpNet, BlockRecord)>> = Default::default();
        let tried = &tried;
        let (prefix, record, node_record) = self
            .retry(what, || async move {
                // Three independent reads, at once: on etcd each is a
                // round trip.
                let ((mut p, pool_rev), (mut n, node_rev), blocks) = tokio::try_join!(
                    self.read_pool(pool),
                    self.must_read_node(node),
                    self.pool_blocks(pool)
                )?;
                match n.state() {
                    NodeState::Ready => {}
                    state => {
                        return Err(Error::Precondition(format!(
                            "node {:?} is {} and claims no block",
                            node.as_str(),
                            match state {
                                NodeState::Draining => "draining",
                                _ => "dead (its lease lapsed; it registers again)",
                            }
                        )));
                    }
                }
                let lost = tried.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some((prefix, record)) = lost
                    && blocks.get(&prefix) == Some(&record)
                {
                    return Ok((prefix, record, n));
                }
                let mine: Vec<_> = blocks.iter().filter(|(_, b)| &b.node == node).collect();
                if p.spec.mode == PoolMode::Bridge
                    && let Some((prefix, b)) = mine.first()
                {
                    return Ok((**prefix, (*b).clone(), n));
                }
                if mine.len() as u32 >= p.spec.max_blocks_per_node {
                    return Err(Error::Exhausted(format!(
                        "node {:?} holds {} blocks of pool {:?}, its cap (max_blocks_per_node)",
                        node.as_str(),
                        mine.len(),
                        pool.as_str()
                    )));
                }
                let held: BTreeSet<IpNet> = blocks.keys().copied().collect();
                let Some(prefix) = p.spec.blocks().find(|b| !held.contains(b)) else {
                    return Err(Error::Exhausted(format!(
                        "pool {:?} has no free block: all {} are held",
                        pool.as_str(),
                        held.len()
                    )));
                };
                let record = BlockRecord {
                    node: node.clone(),
                    claimed_unix_ms: unix_ms(),
                };
                p.held += 1;
                *n.held.entry(pool.clone()).or_default() += 1;
                *tried.lock().unwrap_or_else(|e| e.into_inner()) = Some((prefix, record.clone()));
                self.store
                    .txn(vec![
                        Op::put(keys::block(pool, prefix), encode(&record), Expect::Absent),
                        Op::put(keys::pool(pool), encode(&p), Expect::Revision(pool_rev)),
                        Op::put(keys::node(node), encode(&n), Expect::Revision(node_rev)),
                    ])
                    .await?;
                tracing::info!(%node, %pool, %prefix, "block claimed");
                Ok((prefix, record, n))
            })
            .await?;
        Ok(block_view(pool.clone(), prefix, record, Some(&node_record)))
    }

    /// Releases block `prefix` of `pool` held by `node`. One nobody holds
    /// is done; one another node holds is FAILED_PRECONDITION.
    pub async fn release_block(
        &self,
        node: &NodeName,
        pool: &PoolName,
        prefix: IpNet,
    ) -> Result<(), Error> {
        let what = || format!("block {prefix} of pool {:?}", pool.as_str());
        let _turn = self.pool_turn(pool).await;
        self.retry(what, || async move {
            let key = keys::block(pool, prefix);
            let Some(v) = self.store.get(&key).await? else {
                return Ok(());
            };
            let record: BlockRecord = decode(&key, &v.value)?;
            if &record.node != node {
                return Err(Error::Precondition(format!(
                    "block {prefix} of pool {:?} is held by node {:?}, not {:?}",
                    pool.as_str(),
                    record.node.as_str(),
                    node.as_str()
                )));
            }
            let ops = self
                .release_ops(pool, &[(prefix, v.revision)], node)
                .await?;
            self.store.txn(ops).await?;
            tracing::info!(%node, %pool, %prefix, "block released");
            Ok(())
        })
        .await
    }

    /// Blocks, optionally of one pool and/or one node, in key order.
    pub async fn list_blocks(
        &self,
        pool: Option<&PoolName>,
        node: Option<&NodeName>,
    ) -> Result<Vec<Block>, Error> {
        let prefix = pool.map_or_else(|| keys::BLOCKS.to_owned(), keys::pool_blocks);
        let listing = self.store.list(&prefix).await?;
        let nodes: BTreeMap<NodeName, NodeRecord> = self
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.record.spec.name.clone(), n.record))
            .collect();
        let mut out = Vec::new();
        for (k, v) in &listing.entries {
            let Some(keys::Key::Block(p, prefix)) = keys::parse(k) else {
                continue;
            };
            let record: BlockRecord = decode(k, &v.value)?;
            if node.is_some_and(|n| n != &record.node) {
                continue;
            }
            let owner = nodes.get(&record.node);
            out.push(block_view(p, prefix, record, owner));
        }
        Ok(out)
    }

    /// The blocks of `pool`, with their records.
    async fn pool_blocks(&self, pool: &PoolName) -> Result<BTreeMap<IpNet, BlockRecord>, Error> {
        let listing = self.store.list(&keys::pool_blocks(pool)).await?;
        let mut out = BTreeMap::new();
        for (k, v) in &listing.entries {
            if let Some(keys::Key::Block(_, prefix)) = keys::parse(k) {
                out.insert(prefix, decode(k, &v.value)?);
            }
        }
        Ok(out)
    }

    /// The writes that release `blocks` (each with the revision it was
    /// read at) of `pool`, held by `node`: the blocks go, the pool's and the
    /// node's counts drop, the node's usage of them is forgotten.
    async fn release_ops(
        &self,
        pool: &PoolName,
        blocks: &[(IpNet, u64)],
        node: &NodeName,
    ) -> Result<Vec<Op>, Error> {
        let mut ops: Vec<Op> = blocks
            .iter()
            .map(|(prefix, rev)| Op::delete(keys::block(pool, *prefix), Expect::Revision(*rev)))
            .collect();
        let n = blocks.len() as u64;
        match self.read_pool(pool).await {
            Ok((mut p, rev)) => {
                p.held = p.held.saturating_sub(n);
                ops.push(Op::put(keys::pool(pool), encode(&p), Expect::Revision(rev)));
            }
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some((mut record, rev)) = self.read_node(node).await? {
            let held = record.held.entry(pool.clone()).or_default();
            *held = held.saturating_sub(n as u32);
            if *held == 0 {
                record.held.remove(pool);
            }
            let released: Vec<IpNet> = blocks.iter().map(|(p, _)| *p).collect();
            self.forget_usage(node, &released);
            ops.push(Op::put(
                keys::node(node),
                encode(&record),
                Expect::Revision(rev),
            ));
        }
        Ok(ops)
    }

    /// Releases every block `node` holds, one commit per pool; with
    /// `remove`, the node's record goes in the last commit (or alone). When
    /// not removing, each commit is made only while the node is still dead
    /// past the grace period, so a node that comes back keeps what it holds.
    pub(crate) async fn release_all_blocks(
        &self,
        node: &NodeName,
        remove: bool,
    ) -> Result<Vec<IpNet>, Error> {
        let what = || format!("blocks of node {:?}", node.as_str());
        self.retry(what, || async move {
            let Some((record, node_rev)) = self.read_node(node).await? else {
                return Ok(Vec::new());
            };
            let past_grace = self.lease_age(node) > self.config.lease_ttl + self.config.grace;
            if !(remove || record.dead && past_grace) {
                return Ok(Vec::new());
            }
            let listing = self.store.list(keys::BLOCKS).await?;
            let mut by_pool: BTreeMap<PoolName, Vec<(IpNet, u64)>> = BTreeMap::new();
            for (k, v) in &listing.entries {
                let Some(keys::Key::Block(pool, prefix)) = keys::parse(k) else {
                    continue;
                };
                let b: BlockRecord = decode(k, &v.value)?;
                if &b.node == node {
                    by_pool.entry(pool).or_default().push((prefix, v.revision));
                }
            }
            let mut ops = Vec::new();
            let mut released = Vec::new();
            for (pool, blocks) in &by_pool {
                ops.extend(self.release_ops(pool, blocks, node).await?);
                released.extend(blocks.iter().map(|(p, _)| *p));
            }
            // The node's record: one write, built from every pool's release.
            ops.retain(|op| op.key() != keys::node(node));
            let mut rest = record.clone();
            rest.held.clear();
            rest.usage.clear();
            ops.push(if remove {
                Op::delete(keys::node(node), Expect::Revision(node_rev))
            } else {
                Op::put(keys::node(node), encode(&rest), Expect::Revision(node_rev))
            });
            self.store.txn(ops).await?;
            Ok(released)
        })
        .await
    }

    /// Releases block `prefix` of `pool` whoever holds it (the IPAM
    /// release of a dead or unknown owner's block).
    pub(crate) async fn force_release(&self, pool: &PoolName, prefix: IpNet) -> Result<(), Error> {
        let what = || format!("block {prefix} of pool {:?}", pool.as_str());
        let _turn = self.pool_turn(pool).await;
        self.retry(what, || async move {
            let key = keys::block(pool, prefix);
            let Some(v) = self.store.get(&key).await? else {
                return Ok(());
            };
            let record: BlockRecord = decode(&key, &v.value)?;
            let ops = self
                .release_ops(pool, &[(prefix, v.revision)], &record.node)
                .await?;
            self.store.txn(ops).await?;
            Ok(())
        })
        .await
    }
}

/// A block as answered: its record, and its holder's usage and addresses.
pub(crate) fn block_view(
    pool: PoolName,
    prefix: IpNet,
    record: BlockRecord,
    owner: Option<&NodeRecord>,
) -> Block {
    Block {
        used: owner.and_then(|n| n.usage.get(&prefix).copied()),
        address_v4: owner.and_then(|n| n.spec.address_v4),
        address_v6: owner.and_then(|n| n.spec.address_v6),
        pool,
        prefix,
        record,
    }
}
