//! The controller reading nodes: what each node's own IPAM holds, compared
//! with the block map.
//!
//! The block map is the controller's; which addresses a node hands out is
//! the node's, in its own store. They can part: a block the controller
//! released while its node was out of contact, a release the node made
//! that never reached the controller, a store restored from a backup on
//! either side. Only the node can say what it really holds, so the IPAM
//! check asks it ([`NodeReader::held_blocks`]).
//!
//! How a node is reached is not this crate's business (the core never
//! speaks gRPC): the reader is a trait, implemented over the node's Agent
//! API with mutual TLS by `trellis-grpc`, and by a map in tests. A check
//! is a moment's picture: a block claimed or given back while it runs may
//! show for one check, and a mismatch that stays across checks is real.

use crate::model::{IpamProblem, ProblemKind};
use crate::{Controller, Error, Node, Snapshot};
use async_trait::async_trait;
use ipnet::IpNet;
use std::collections::BTreeMap;
use trellis_types::{AgentAddress, NodeName, PoolName};

/// One block of a controller pool, as a node's own IPAM holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBlock {
    /// The controller pool it was granted from.
    pub pool: PoolName,
    /// The block.
    pub prefix: IpNet,
    /// Addresses the node has handed out in it.
    pub used: u32,
    /// The node hands out no new address from it.
    pub frozen: bool,
}

/// Why a node could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeReadError {
    /// Not reached, or no answer in time.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It answered with a refusal (the controller's certificate not
    /// accepted, the reader not configured for the address's scheme).
    #[error("refused: {0}")]
    Refused(String),
    /// It answered something that does not parse.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// Reads a node through its Agent API.
#[async_trait]
pub trait NodeReader: Send + Sync {
    /// The blocks of controller pools node `node`, at `address`, holds in
    /// its own IPAM.
    async fn held_blocks(
        &self,
        node: &NodeName,
        address: &AgentAddress,
    ) -> Result<Vec<HeldBlock>, NodeReadError>;
}

impl Controller {
    /// Where node `name` is read: the Agent API address it registered.
    /// NOT_FOUND for a node not registered, FAILED_PRECONDITION for one
    /// that registered none.
    pub async fn agent_address(&self, name: &NodeName) -> Result<AgentAddress, Error> {
        let (record, _) = self.must_read_node(name).await?;
        record.spec.agent_address.ok_or_else(|| {
            Error::Precondition(format!(
                "node {:?} registered no Agent API address: the controller cannot read it \
                 (trellisd --agent-address, or --listen with TLS)",
                name.as_str()
            ))
        })
    }
}

/// The problems found by reading every live node of `snap` that registered
/// an Agent API address (concurrently) and comparing what each holds with
/// the blocks the controller gives it.
pub(crate) async fn node_problems(snap: &Snapshot, reader: &dyn NodeReader) -> Vec<IpamProblem> {
    let readable: Vec<(&Node, &AgentAddress)> = snap
        .nodes
        .iter()
        .filter(|n| !n.record.dead)
        .filter_map(|n| Some((n, n.record.spec.agent_address.as_ref()?)))
        .collect();
    let reads = readable.iter().map(|(n, address)| async move {
        let name = &n.record.spec.name;
        (name, *address, reader.held_blocks(name, address).await)
    });
    let holders: BTreeMap<IpNet, (&PoolName, &NodeName)> = snap
        .blocks
        .iter()
        .map(|b| (b.prefix, (&b.pool, &b.record.node)))
        .collect();
    let mut out = Vec::new();
    for (node, address, read) in futures::future::join_all(reads).await {
        match read {
            Ok(held) => out.extend(compare(node, &held, &holders)),
            Err(e) => out.push(IpamProblem {
                kind: ProblemKind::NodeUnreadable,
                pool: None,
                prefix: None,
                node: node.clone(),
                detail: format!(
                    "node {:?}'s Agent API at {address} could not be read ({e}): its blocks were not compared",
                    node.as_str()
                ),
                releasable: false,
            }),
        }
    }
    out
}

/// What differs between the blocks the controller gives `node` (those
/// `holders`, the block map, names it for) and those it `held`.
pub fn compare(
    node: &NodeName,
    held: &[HeldBlock],
    holders: &BTreeMap<IpNet, (&PoolName, &NodeName)>,
) -> Vec<IpamProblem> {
    let who = node.as_str();
    let mut out = Vec::new();
    for (prefix, (pool, _)) in holders.iter().filter(|(_, (_, n))| *n == node) {
        if held.iter().any(|h| h.prefix == *prefix) {
            continue;
        }
        out.push(IpamProblem {
            kind: ProblemKind::NotHeldByNode,
            pool: Some((*pool).clone()),
            prefix: Some(*prefix),
            node: node.clone(),
            detail: format!(
                "block {prefix} of pool {pool} is node {who:?}'s at the controller, but the node does not hold it"
            ),
            releasable: false,
        });
    }
    for h in held {
        let holder = holders.get(&h.prefix).map(|(_, n)| *n);
        if holder == Some(node) {
            continue;
        }
        let frozen = if h.frozen { ", frozen" } else { "" };
        let given = match holder {
            Some(other) => format!("gives it to node {:?}", other.as_str()),
            None => "gives it to no node".to_owned(),
        };
        out.push(IpamProblem {
            kind: ProblemKind::HeldWithoutGrant,
            pool: Some(h.pool.clone()),
            prefix: Some(h.prefix),
            node: node.clone(),
            detail: format!(
                "node {who:?} holds block {} of pool {} ({} addresses in use{frozen}); the controller {given}",
                h.prefix, h.pool, h.used
            ),
            releasable: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn held(prefix: &str, used: u32, frozen: bool) -> HeldBlock {
        HeldBlock {
            pool: "pods".parse().unwrap(),
            prefix: net(prefix),
            used,
            frozen,
        }
    }

    #[test]
    fn a_node_holding_what_it_is_given_is_fine() {
        let (pool, h1): (PoolName, _) = ("pods".parse().unwrap(), name("h1"));
        let holders = BTreeMap::from([(net("10.244.0.0/26"), (&pool, &h1))]);
        assert_eq!(
            compare(&h1, &[held("10.244.0.0/26", 3, false)], &holders),
            []
        );
    }

    #[test]
    fn each_side_of_a_mismatch_is_named() {
        let pool: PoolName = "pods".parse().unwrap();
        let (h1, h2) = (name("h1"), name("h2"));
        let holders = BTreeMap::from([
            (net("10.244.0.0/26"), (&pool, &h1)),
            (net("10.244.0.64/26"), (&pool, &h2)),
        ]);
        let node_has = [
            held("10.244.0.64/26", 2, true),
            held("10.244.0.128/26", 0, false),
        ];
        let got: Vec<_> = compare(&h1, &node_has, &holders)
            .into_iter()
            .map(|p| (p.kind, p.prefix.unwrap().to_string(), p.detail))
            .collect();
        assert_eq!(
            got,
            [
                (
                    ProblemKind::NotHeldByNode,
                    "10.244.0.0/26".into(),
                    "block 10.244.0.0/26 of pool pods is node \"h1\"'s at the controller, \
                     but the node does not hold it"
                        .into()
                ),
                (
                    ProblemKind::HeldWithoutGrant,
                    "10.244.0.64/26".into(),
                    "node \"h1\" holds block 10.244.0.64/26 of pool pods (2 addresses in use, \
                     frozen); the controller gives it to node \"h2\""
                        .into()
                ),
                (
                    ProblemKind::HeldWithoutGrant,
                    "10.244.0.128/26".into(),
                    "node \"h1\" holds block 10.244.0.128/26 of pool pods (0 addresses in use); \
                     the controller gives it to no node"
                        .into()
                ),
            ]
        );
    }

    /// A reader answering from a map of node → blocks (a node missing
    /// from it is unreachable), counting its reads.
    struct Fake(
        BTreeMap<&'static str, Vec<HeldBlock>>,
        std::sync::Mutex<Vec<String>>,
    );

    #[async_trait]
    impl NodeReader for Fake {
        async fn held_blocks(
            &self,
            node: &NodeName,
            address: &AgentAddress,
        ) -> Result<Vec<HeldBlock>, NodeReadError> {
            self.1.lock().unwrap().push(format!("{node} {address}"));
            self.0
                .get(node.as_str())
                .cloned()
                .ok_or_else(|| NodeReadError::Unreachable("connection refused".into()))
        }
    }

    #[tokio::test]
    async fn the_check_reads_every_live_node_with_an_address() {
        use crate::{Config, Controller, PoolMode, PoolSpec};
        let store = std::sync::Arc::new(trellis_store::MemoryStore::new());
        let c = Controller::new(store, Config::default());
        let spec = PoolSpec::new("pods", net("10.244.0.0/16"), 26, PoolMode::Routed, false, 0);
        c.create_pool(spec.unwrap()).await.unwrap();
        for (n, address) in [
            ("h1", Some("https://192.0.2.1:7444")),
            ("h2", Some("https://192.0.2.2:7444")),
            ("h3", None),
        ] {
            let spec = crate::NodeSpec {
                name: name(n),
                address_v4: Some("192.0.2.9".parse().unwrap()),
                address_v6: None,
                labels: Default::default(),
                agent_address: address.map(|a| a.parse().unwrap()),
            };
            c.register_node(spec).await.unwrap();
        }
        let pool: PoolName = "pods".parse().unwrap();
        let b1 = c.claim_block(&name("h1"), &pool).await.unwrap().prefix;
        c.claim_block(&name("h3"), &pool).await.unwrap();
        let e = c.agent_address(&name("h3")).await.unwrap_err();
        assert!(
            e.to_string().contains("registered no Agent API address"),
            "{e}"
        );
        assert_eq!(
            c.agent_address(&name("h1")).await.unwrap().as_str(),
            "https://192.0.2.1:7444"
        );

        // h1 holds what it is given; h2 cannot be read; h3 is not read.
        let fake = Fake(
            BTreeMap::from([("h1", vec![held(&b1.to_string(), 1, false)])]),
            Default::default(),
        );
        let problems = c.check_ipam_with(Some(&fake)).await.unwrap();
        let got: Vec<_> = problems.iter().map(|p| (p.kind, p.node.as_str())).collect();
        assert_eq!(got, [(ProblemKind::NodeUnreadable, "h2")]);
        assert!(
            problems[0]
                .detail
                .contains("at https://192.0.2.2:7444 could not be read"),
            "{}",
            problems[0].detail
        );
        let mut reads = fake.1.lock().unwrap().clone();
        reads.sort();
        assert_eq!(
            reads,
            ["h1 https://192.0.2.1:7444", "h2 https://192.0.2.2:7444"]
        );
        // Without a reader, nothing is read; the store's own check is as before.
        assert_eq!(c.check_ipam().await.unwrap(), []);

        // h1 loses its block at the controller while it still holds it.
        c.release_block(&name("h1"), &pool, b1).await.unwrap();
        let problems = c.check_ipam_with(Some(&fake)).await.unwrap();
        let got: Vec<_> = problems.iter().map(|p| (p.kind, p.prefix)).collect();
        assert_eq!(
            got,
            [
                (ProblemKind::HeldWithoutGrant, Some(b1)),
                (ProblemKind::NodeUnreadable, None)
            ]
        );
        assert!(!problems[0].releasable);
    }
}
