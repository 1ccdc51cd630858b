//! BGP export, wired: the speaker (trellis-bgp), the peers it starts with
//! (the config file's, then those added over gRPC and kept in the store), and
//! the loop that feeds it the agent's exported prefixes.
//!
//! * **The agent decides what, the speaker how and to whom**: the loop reads
//!   `Agent::exported_prefixes` after every agent event that may change it
//!   (networks and blocks, not endpoints; and every [`RESYNC`] regardless)
//!   and hands the whole set to the speaker, which sends each peer the
//!   difference. Events that arrive together are taken as one.
//! * **Peers added over gRPC survive a restart**: kept under
//!   `nodes/<node>/bgp/peers/<address>` in the node's store (the MD5 key
//!   with them: the state directory is 0700). The config file's peers are
//!   the file's: removing one over gRPC is refused, naming the file.
//! * **A stop is a graceful restart**: sessions close without a
//!   NOTIFICATION, so routers keep our routes as stale while trellisd is
//!   away — the kernel keeps forwarding meanwhile — and the next start sends
//!   the table and End-of-RIB once the export set is known.

use crate::config;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use trellis_agent::{Agent, Event};
use trellis_bgp::{Error, PeerConfig, Speaker, Stop};
use trellis_grpc::{BgpCore, PeerView};
use trellis_store::{Expect, KvStore};

/// The export set is read again this often even without an event.
pub const RESYNC: Duration = Duration::from_secs(10);

/// The speaker with its peers' provenance and their store.
pub struct BgpNode {
    speaker: Speaker,
    store: Arc<dyn KvStore>,
    node: String,
    from_config: BTreeSet<IpAddr>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    peer: PeerConfig,
    md5_password: Option<String>,
}

impl BgpNode {
    /// Starts the speaker with the config file's peers and the stored ones.
    pub async fn start(cfg: &config::Bgp, agent: &Agent) -> Result<Arc<BgpNode>> {
        let speaker = Speaker::start(cfg.speaker.clone())
            .await
            .context("start the BGP speaker")?;
        let mut from_config = BTreeSet::new();
        for (i, p) in cfg.peers.iter().enumerate() {
            speaker
                .add_peer(p.clone())
                .with_context(|| format!("bgp.peers[{i}]"))?;
            from_config.insert(p.address);
        }
        let node = BgpNode {
            speaker,
            store: agent.store().clone(),
            node: agent.node().to_owned(),
            from_config,
        };
        let stored = node
            .store
            .list(&node.prefix())
            .await
            .context("read the BGP peers kept in the store")?;
        for (key, v) in stored.entries {
            let s: Stored = match serde_json::from_slice(&v.value) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "a stored BGP peer that does not parse: skipped");
                    continue;
                }
            };
            let peer = PeerConfig {
                md5_password: s.md5_password,
                ..s.peer
            };
            if node.from_config.contains(&peer.address) {
                tracing::warn!(peer = %peer.address, "a peer kept from the API is now in the config file: the file's wins");
                continue;
            }
            if let Err(e) = node.speaker.add_peer(peer) {
                tracing::warn!(%key, error = %e, "a stored BGP peer cannot be added: skipped");
            }
        }
        tracing::info!(peers = node.speaker.peers().len(), listen = ?node.speaker.listen_addr(), "BGP speaker started");
        Ok(Arc::new(node))
    }

    fn prefix(&self) -> String {
        format!("nodes/{}/bgp/peers", self.node)
    }

    fn key(&self, a: IpAddr) -> String {
        format!("{}/{a}", self.prefix())
    }

    /// The speaker (for metrics).
    pub fn speaker(&self) -> &Speaker {
        &self.speaker
    }

    /// Feeds the speaker the agent's exported prefixes until the agent's
    /// event channel closes.
    pub async fn export(self: Arc<Self>, agent: Arc<Agent>) {
        let mut events = agent.subscribe();
        loop {
            match agent.exported_prefixes().await {
                Ok(p) => self.speaker.set_routes(p),
                Err(e) => tracing::warn!(error = %e, "read the prefixes to export"),
            }
            // Wait for an event that may change the set; endpoint events
            // never do (an attach's new block is its own BlocksChanged), and
            // reading the set after each of a burst's attaches would cost
            // the burst a store read each.
            let deadline = tokio::time::Instant::now() + RESYNC;
            loop {
                let r = tokio::select! {
                    r = events.recv() => r,
                    () = tokio::time::sleep_until(deadline) => break,
                };
                match r {
                    Ok(Event::EndpointAttached(_) | Event::EndpointDetached(_)) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        while events.try_recv().is_ok() {}
                        break;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }

    /// Closes every session for a restart (no NOTIFICATION: graceful
    /// restart keeps the routes at the routers).
    pub async fn stop(&self) {
        self.speaker.shutdown(Stop::Restart).await;
    }

    fn view(&self, status: trellis_bgp::PeerStatus) -> PeerView {
        PeerView {
            from_config: self.from_config.contains(&status.config.address),
            status,
        }
    }
}

fn store_error(what: String, e: impl std::fmt::Display) -> Error {
    Error::Io {
        what,
        source: std::io::Error::other(e.to_string()),
    }
}

#[tonic::async_trait]
impl BgpCore for BgpNode {
    async fn add_peer(&self, peer: PeerConfig) -> Result<PeerView, Error> {
        let a = peer.address;
        let stored = Stored {
            peer: peer.clone(),
            md5_password: peer.md5_password.clone(),
        };
        let bytes = serde_json::to_vec(&stored).expect("a peer serializes");
        self.speaker.add_peer(peer)?;
        if let Err(e) = self.store.put_if(&self.key(a), bytes, Expect::Absent).await {
            // Nothing half-made: the session goes with the failed write.
            let _ = self.speaker.remove_peer(a).await;
            return Err(store_error(format!("keep peer {a} in the store"), e));
        }
        let status = self.speaker.peer(a).ok_or(Error::NotFound(a))?;
        Ok(self.view(status))
    }

    async fn remove_peer(&self, address: IpAddr) -> Result<(), Error> {
        let a = trellis_bgp::wire::canonical(address);
        if self.from_config.contains(&a) {
            return Err(Error::Refused(format!(
                "peer {a} comes from trellisd's config file ([[bgp.peers]]): remove it there"
            )));
        }
        self.speaker.remove_peer(a).await?;
        self.store
            .delete_if(&self.key(a), Expect::Any)
            .await
            .map_err(|e| store_error(format!("forget peer {a} in the store"), e))?;
        Ok(())
    }

    fn peers(&self) -> Vec<PeerView> {
        self.speaker
            .peers()
            .into_iter()
            .map(|s| self.view(s))
            .collect()
    }

    fn exported(&self) -> Option<BTreeSet<ipnet::IpNet>> {
        self.speaker.routes()
    }
}
