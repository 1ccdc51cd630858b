//! The agent's records in the store: one key per network and per endpoint.
//!
//! Networks are definitions every node shares: `agent/networks/<name>`.
//! Endpoints belong to the node that plumbed them:
//! `nodes/<node>/endpoints/<container>/<ifname>`, so agents of several nodes
//! sharing one store (which IPAM is built for) each see, claim the host
//! ports of, and reconcile only their own. Values are JSON. Stores written
//! before endpoints were scoped (`agent/endpoints/…`, one node per store)
//! are moved under the node that opens them, in one transaction.
//!
//! An endpoint's record is written (durably, with the redb backend) in the
//! same store transaction as the IPAM blocks that give it its addresses,
//! before anything is plumbed, so a success returned to the caller is never
//! forgotten by a restart and an address is never taken without a record
//! saying by whom; it is deleted in the transaction that releases them.

use crate::Error;
use crate::model::{Endpoint, Network};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use trellis_store::{Expect, KvStore, Op};
use trellis_types::{Handle, NodeName};

/// Where network definitions live (shared by every node).
pub(crate) const NETWORKS: &str = "agent/networks";
/// Where each node's records live (`nodes/<node>/…`).
const NODES: &str = "nodes";
/// Where endpoint records lived before they were scoped by node.
const LEGACY_ENDPOINTS: &str = "agent/endpoints";

/// Typed access to the agent's records.
pub(crate) struct Records {
    store: Arc<dyn KvStore>,
    /// `nodes/<node>/endpoints`.
    endpoints: String,
}

impl Records {
    /// The records of node `node` in `store`.
    pub(crate) fn new(store: Arc<dyn KvStore>, node: &NodeName) -> Self {
        Self {
            store,
            endpoints: format!("{NODES}/{node}/endpoints"),
        }
    }

    /// Moves endpoint records of the unscoped layout under this node, in
    /// one transaction (a store from before records were scoped held one
    /// node's). Returns how many moved.
    pub(crate) async fn adopt_legacy(&self) -> Result<usize, Error> {
        let old = self.store.list(LEGACY_ENDPOINTS).await?;
        if old.entries.is_empty() {
            return Ok(0);
        }
        let mut ops = Vec::new();
        for (key, v) in &old.entries {
            let rest = key.strip_prefix(LEGACY_ENDPOINTS).unwrap_or(key);
            let moved = format!("{}{rest}", self.endpoints);
            ops.push(Op::put(moved, v.value.clone(), Expect::Absent));
            ops.push(Op::delete(key.clone(), Expect::Revision(v.revision)));
        }
        self.store.txn(ops).await?;
        Ok(old.entries.len())
    }

    pub(crate) async fn put_network(&self, net: &Network) -> Result<(), Error> {
        self.put(&format!("{NETWORKS}/{}", net.spec.name), net, Expect::Any)
            .await
    }

    pub(crate) async fn delete_network(&self, name: &str) -> Result<(), Error> {
        self.store
            .delete_if(&format!("{NETWORKS}/{name}"), Expect::Any)
            .await?;
        Ok(())
    }

    pub(crate) async fn endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        self.list(&self.endpoints).await
    }

    /// The endpoints of every node sharing the store (a network is only
    /// deleted when none has one on it).
    pub(crate) async fn endpoints_of_every_node(&self) -> Result<Vec<Endpoint>, Error> {
        let listing = self.store.list(NODES).await?;
        listing
            .entries
            .iter()
            .filter(|(k, _)| k.split('/').nth(2) == Some("endpoints"))
            .map(|(k, v)| decode(k, &v.value))
            .collect()
    }

    pub(crate) async fn endpoint(&self, h: &Handle) -> Result<Option<Endpoint>, Error> {
        let key = self.endpoint_key(h);
        match self.store.get(&key).await? {
            Some(v) => decode(&key, &v.value).map(Some),
            None => Ok(None),
        }
    }

    /// The write that records a new endpoint (it fails if one is recorded
    /// already), for the store transaction that takes its addresses.
    pub(crate) fn create_op(&self, ep: &Endpoint) -> Op {
        let bytes = serde_json::to_vec(ep).expect("records serialise");
        Op::put(
            self.endpoint_key(&ep.request.handle()),
            bytes,
            Expect::Absent,
        )
    }

    /// The write that forgets an endpoint, for the store transaction that
    /// releases its addresses.
    pub(crate) fn delete_op(&self, h: &Handle) -> Op {
        Op::delete(self.endpoint_key(h), Expect::Any)
    }

    fn endpoint_key(&self, h: &Handle) -> String {
        format!("{}/{}/{}", self.endpoints, h.container, h.ifname)
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T, expect: Expect) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).expect("records serialise");
        self.store.put_if(key, bytes, expect).await?;
        Ok(())
    }

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, Error> {
        let listing = self.store.list(prefix).await?;
        listing
            .entries
            .iter()
            .map(|(k, v)| decode(k, &v.value))
            .collect()
    }
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// `Ok` if no step failed, else every failure together.
pub(crate) fn teardown_result(what: String, errors: Vec<String>) -> Result<(), Error> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Teardown { what, errors })
    }
}
