//! The agent's records in the store: one key per network and per endpoint.
//!
//! `agent/networks/<name>` and `agent/endpoints/<container>/<ifname>`, JSON.
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
use trellis_types::Handle;

const NETWORKS: &str = "agent/networks";
const ENDPOINTS: &str = "agent/endpoints";

/// Typed access to the agent's records.
pub(crate) struct Records {
    store: Arc<dyn KvStore>,
}

impl Records {
    pub(crate) fn new(store: Arc<dyn KvStore>) -> Self {
        Self { store }
    }

    pub(crate) async fn networks(&self) -> Result<Vec<Network>, Error> {
        self.list(NETWORKS).await
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
        self.list(ENDPOINTS).await
    }

    pub(crate) async fn endpoint(&self, h: &Handle) -> Result<Option<Endpoint>, Error> {
        let key = endpoint_key(h);
        match self.store.get(&key).await? {
            Some(v) => decode(&key, &v.value).map(Some),
            None => Ok(None),
        }
    }

    /// The write that records a new endpoint (it fails if one is recorded
    /// already), for the store transaction that takes its addresses.
    pub(crate) fn create_op(&self, ep: &Endpoint) -> Op {
        let bytes = serde_json::to_vec(ep).expect("records serialise");
        Op::put(endpoint_key(&ep.request.handle()), bytes, Expect::Absent)
    }

    /// The write that forgets an endpoint, for the store transaction that
    /// releases its addresses.
    pub(crate) fn delete_op(&self, h: &Handle) -> Op {
        Op::delete(endpoint_key(h), Expect::Any)
    }

    /// Rewrites an endpoint's record (a repair changed its MAC or ifindex).
    pub(crate) async fn put_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        self.put(&endpoint_key(&ep.request.handle()), ep, Expect::Any)
            .await
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

fn endpoint_key(h: &Handle) -> String {
    format!("{ENDPOINTS}/{}/{}", h.container, h.ifname)
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
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
