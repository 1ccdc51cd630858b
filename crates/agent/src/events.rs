//! Events: what changed, sent to subscribers after the change succeeded.
//!
//! A `tokio::sync::broadcast` channel: sending never blocks an attach, and a
//! subscriber that falls behind loses the oldest events (it sees `Lagged`
//! and can re-list), rather than holding memory for it or slowing the node.

use crate::agent::Agent;
use crate::model::{Endpoint, Network};
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it lags.
pub(crate) const CAPACITY: usize = 1024;

/// A change to the node's networks or endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A network was created.
    NetworkCreated(Network),
    /// A network was deleted.
    NetworkDeleted(Network),
    /// An endpoint was attached (and recorded).
    EndpointAttached(Endpoint),
    /// An endpoint was detached (and forgotten).
    EndpointDetached(Endpoint),
    /// The routed blocks this node owns changed outside an attach: a block
    /// of a cluster pool was adopted ([`Agent::adopt_block`], or claimed
    /// from the controller for an attach, which may yet fail) or an empty
    /// one retired ([`Agent::retire_block`]). It carries nothing: ask
    /// [`Agent::exported_prefixes`] for the set now.
    BlocksChanged,
}

impl Agent {
    /// Events from now on. Each receiver sees every event sent after it
    /// subscribed, unless it falls more than 1024 behind.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sends `event`; having no subscriber is fine.
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}
