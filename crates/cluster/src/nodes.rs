//! Nodes: registration, leases, drain and removal, and the sweeper that
//! marks nodes dead and, after the grace period, gives their blocks back.

use crate::controller::unix_ms;
use crate::model::{BlockUsage, Node, NodeRecord, NodeSpec, NodeState, decode, encode};
use crate::{Controller, Error, keys};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use trellis_store::Expect;
use trellis_types::NodeName;

/// What [`Controller::sweep`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Nodes whose lease lapsed, marked dead.
    pub died: Vec<NodeName>,
    /// Blocks given back: dead nodes' past the grace period.
    pub released: Vec<IpNet>,
}

impl Controller {
    /// Registers `spec` (or updates a registered node's addresses and
    /// labels) and renews its lease. A node that comes back keeps its
    /// blocks and its drain.
    pub async fn register_node(&self, spec: NodeSpec) -> Result<Node, Error> {
        let spec = &spec;
        let what = || format!("node {:?}", spec.name.as_str());
        let record = self
            .retry(what, || async move {
                let key = keys::node(&spec.name);
                let (record, expect) = match self.read_node(&spec.name).await? {
                    Some((mut old, rev)) => {
                        old.spec = spec.clone();
                        old.dead = false;
                        (old, Expect::Revision(rev))
                    }
                    None => (
                        NodeRecord {
                            spec: spec.clone(),
                            registered_unix_ms: unix_ms(),
                            draining: false,
                            dead: false,
                            held: BTreeMap::new(),
                            usage: BTreeMap::new(),
                        },
                        Expect::Absent,
                    ),
                };
                self.store.put_if(&key, encode(&record), expect).await?;
                Ok(record)
            })
            .await?;
        self.renew(&spec.name);
        tracing::info!(node = %spec.name, "node registered");
        Ok(Node {
            record,
            lease_age: Duration::ZERO,
        })
    }

    /// Renews `node`'s lease and records the usage it reports (when it
    /// changed). A dead node that is heard from again is alive. Returns its
    /// state; FAILED_PRECONDITION if it is not registered.
    pub async fn keep_alive(
        &self,
        node: &NodeName,
        usage: &[BlockUsage],
    ) -> Result<NodeState, Error> {
        let what = || format!("node {:?}", node.as_str());
        let state = self
            .retry(what, || async move {
                let Some((mut record, rev)) = self.read_node(node).await? else {
                    return Err(Error::Precondition(format!(
                        "node {:?} is not registered (register it again)",
                        node.as_str()
                    )));
                };
                if record.dead {
                    // Back from the dead: written (every watcher learns it).
                    record.dead = false;
                    self.store
                        .put_if(&keys::node(node), encode(&record), Expect::Revision(rev))
                        .await?;
                }
                Ok(record.state())
            })
            .await?;
        if !usage.is_empty() {
            self.set_usage(node, usage.iter().map(|u| (u.prefix, u.used)).collect());
        }
        self.renew(node);
        Ok(state)
    }

    /// Node `name`.
    pub async fn node(&self, name: &NodeName) -> Result<Node, Error> {
        let (record, _) = self.must_read_node(name).await?;
        Ok(self.view(record))
    }

    /// Every node, by name.
    pub async fn list_nodes(&self) -> Result<Vec<Node>, Error> {
        let listing = self.store.list(keys::NODES).await?;
        listing
            .entries
            .iter()
            .map(|(k, v)| Ok(self.view(decode(k, &v.value)?)))
            .collect()
    }

    /// A node as answered: its record with the usage it last reported, and
    /// its lease's age.
    pub(crate) fn view(&self, mut record: NodeRecord) -> Node {
        let lease_age = self.lease_age(&record.spec.name);
        record.usage = self.usage_of(&record.spec.name);
        Node { record, lease_age }
    }

    /// Drains node `name`: it claims no new block; what it holds stays.
    pub async fn drain_node(&self, name: &NodeName) -> Result<Node, Error> {
        let what = || format!("node {:?}", name.as_str());
        let record = self
            .retry(what, || async move {
                let (mut record, rev) = self.must_read_node(name).await?;
                if !record.draining {
                    record.draining = true;
                    self.store
                        .put_if(&keys::node(name), encode(&record), Expect::Revision(rev))
                        .await?;
                }
                Ok(record)
            })
            .await?;
        Ok(self.view(record))
    }

    /// Forgets node `name` and gives its blocks back. Refused while it is
    /// alive or reports addresses in use, unless `force`. Unknown is done.
    pub async fn remove_node(&self, name: &NodeName, force: bool) -> Result<Vec<IpNet>, Error> {
        let Some((record, _)) = self.read_node(name).await? else {
            return Ok(Vec::new());
        };
        if !force {
            let used: u32 = self.usage_of(name).values().sum();
            if !record.dead {
                return Err(Error::Precondition(format!(
                    "node {:?} is alive (its lease is renewed); drain and stop it first, or force",
                    name.as_str()
                )));
            }
            if used > 0 {
                return Err(Error::Precondition(format!(
                    "node {:?} last reported {used} addresses in use in its blocks; force to remove it anyway",
                    name.as_str()
                )));
            }
        }
        let released = self.release_all_blocks(name, true).await?;
        self.forget_lease(name);
        tracing::info!(node = %name, blocks = released.len(), "node removed");
        Ok(released)
    }

    /// One pass of the lease sweeper: marks nodes whose lease lapsed dead,
    /// and gives back the blocks of nodes dead for longer than the grace
    /// period. Runs every quarter lease in [`Controller::run_sweeper`].
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        let mut report = SweepReport::default();
        let ttl = self.config.lease_ttl;
        for node in self.list_nodes().await? {
            let name = &node.record.spec.name;
            if !node.record.dead && node.lease_age > ttl {
                if self.mark_dead(name).await? {
                    tracing::warn!(node = %name, age = ?node.lease_age, "lease lapsed: node is dead");
                    report.died.push(name.clone());
                }
            } else if node.record.dead
                && node.lease_age > ttl + self.config.grace
                && node.record.blocks() > 0
            {
                let released = self.release_all_blocks(name, false).await?;
                tracing::warn!(node = %name, blocks = released.len(), "dead past grace: blocks released");
                report.released.extend(released);
            }
        }
        Ok(report)
    }

    /// Runs [`Controller::sweep`] every quarter lease until `shutdown`.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let period = (self.config.lease_ttl / 4).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "lease sweep");
                    }
                }
            }
        }
    }

    /// Marks `name` dead unless it was renewed meanwhile; whether it did.
    async fn mark_dead(&self, name: &NodeName) -> Result<bool, Error> {
        let what = || format!("node {:?}", name.as_str());
        self.retry(what, || async move {
            let Some((mut record, rev)) = self.read_node(name).await? else {
                return Ok(false);
            };
            if record.dead || self.lease_age(name) <= self.config.lease_ttl {
                return Ok(false);
            }
            record.dead = true;
            self.store
                .put_if(&keys::node(name), encode(&record), Expect::Revision(rev))
                .await?;
            Ok(true)
        })
        .await
    }
}
