//! Network definitions follow the store.
//!
//! Networks are shared definitions (`agent/networks/<name>`): another node's
//! agent, or an operator's tool, may create or delete one while this agent
//! runs. The agent keeps an in-memory map for its hot path (an attach reads
//! its network without a store round trip) and keeps it true with a watch
//! from the revision of the listing that filled it: puts and deletes are
//! applied as they come, and a watch that ends (a compacted history, a store
//! restart) is replaced by a fresh listing and a new watch. Changes made
//! elsewhere are announced as events; the agent's own are announced by the
//! call that made them, and arrive here as no-ops.
//!
//! The task holds the store only weakly (the stream it reads holds no
//! database): dropping the agent closes its store at once, so a restart in
//! the same process can open the same redb file again.

use crate::events::Event;
use crate::model::Network;
use crate::records::{NETWORKS, decode};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use trellis_store::{KvStore, WatchEvent};
use trellis_types::NetworkName;

/// The networks by name, shared with the watch that keeps them.
pub(crate) type NetworkMap = Arc<RwLock<HashMap<NetworkName, Network>>>;

/// The task following the store; stopped when the agent goes.
pub(crate) struct NetworkWatch(JoinHandle<()>);

impl Drop for NetworkWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lists the networks into `map` and follows the store from there on.
pub(crate) async fn follow(
    store: Arc<dyn KvStore>,
    map: NetworkMap,
    events: broadcast::Sender<Event>,
) -> Result<NetworkWatch, crate::Error> {
    let from = relist(&*store, &map, &events).await?;
    let store = Arc::downgrade(&store);
    Ok(NetworkWatch(tokio::spawn(run(store, map, events, from))))
}

async fn run(
    store: Weak<dyn KvStore>,
    map: NetworkMap,
    events: broadcast::Sender<Event>,
    mut from: u64,
) {
    loop {
        // Gone with the agent: nothing left to follow.
        let Some(strong) = store.upgrade() else {
            return;
        };
        let watched = strong.watch(NETWORKS, from).await;
        drop(strong);
        match watched {
            Ok(mut stream) => {
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(e) => {
                            from = e.revision() + 1;
                            apply(&map, &events, e);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "network watch ended; listing again");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch network definitions"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(strong) = store.upgrade() else {
            return;
        };
        match relist(&*strong, &map, &events).await {
            Ok(rev) => from = rev,
            Err(e) => tracing::warn!(error = %e, "cannot list network definitions"),
        }
    }
}

/// Replaces the map with the store's networks; returns the revision to
/// watch from.
async fn relist(
    store: &dyn KvStore,
    map: &NetworkMap,
    events: &broadcast::Sender<Event>,
) -> Result<u64, crate::Error> {
    let listing = store.list(NETWORKS).await?;
    let mut fresh = HashMap::new();
    for (key, v) in &listing.entries {
        let net: Network = decode(key, &v.value)?;
        fresh.insert(net.spec.name.clone(), net);
    }
    let mut current = map.write().expect("networks lock");
    for (name, net) in current.iter() {
        if !fresh.contains_key(name) {
            let _ = events.send(Event::NetworkDeleted(net.clone()));
        }
    }
    for (name, net) in &fresh {
        if current.get(name) != Some(net) {
            let _ = events.send(Event::NetworkCreated(net.clone()));
        }
    }
    *current = fresh;
    Ok(listing.revision + 1)
}

fn apply(map: &NetworkMap, events: &broadcast::Sender<Event>, e: WatchEvent) {
    let mut current = map.write().expect("networks lock");
    match e {
        WatchEvent::Put { key, value, .. } => match decode::<Network>(&key, &value) {
            Ok(net) => {
                let name = net.spec.name.clone();
                if current.get(name.as_str()) != Some(&net) {
                    current.insert(name, net.clone());
                    let _ = events.send(Event::NetworkCreated(net));
                }
            }
            Err(e) => tracing::warn!(error = %e, "unreadable network definition"),
        },
        WatchEvent::Delete { key, .. } => {
            let name = key.rsplit('/').next().unwrap_or_default();
            if let Some(net) = current.remove(name) {
                let _ = events.send(Event::NetworkDeleted(net));
            }
        }
    }
}
