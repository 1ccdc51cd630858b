//! The watch hub: one store watch per controller, fanned out to every
//! watcher.
//!
//! # Why
//!
//! Each node keeps a Watch open on the controller. Were each Watch its own
//! store watch, a thousand nodes on etcd would be a thousand etcd watch
//! streams: every write delivered a thousand times, and each delivery
//! decoded and typed again (a block's change reads its owner from the
//! store). Measured: 52.8 ms of controller CPU per claim, 11 claims/s.
//! So the controller watches the store once, types each event once
//! ([`Controller::change`](crate::Controller)), and hands the typed change
//! to every watcher as an [`Arc`].
//!
//! # How
//!
//! * **Started by the first watch, at the revision it needs.** The hub
//!   holds every change from its start on; it keeps the last
//!   [`TYPED_KEPT`](crate::watch::TYPED_KEPT) in a ring, so a watcher
//!   resuming from a revision the ring still covers is served from memory.
//! * **Subscribe, then replay, then follow — under one lock.** The hub
//!   appends to the ring and broadcasts while holding the lock a subscriber
//!   takes to subscribe and copy the ring, so what the copy holds and what
//!   the subscription receives meet exactly. Each change also carries the
//!   hub's own sequence number, and a subscriber skips any it has yielded
//!   (etcd gives a transaction's writes one revision, so a revision alone
//!   does not name a change).
//! * **A slow watcher is cut off, never waited for.** Changes go out on a
//!   bounded [`broadcast`] channel: a watcher more than its capacity
//!   behind finds it has lagged, and its stream ends with
//!   [`Error::WatchEnded`]; it watches again from the revision after the
//!   last it saw. The hub and the other watchers never notice.
//! * **A failure ends the hub, not the controller.** When the store watch
//!   fails (etcd out of reach after its own retries, history compacted
//!   past the hub), the hub stops and its subscribers' streams end with
//!   the error; the next watch starts a new hub.
//! * **It stops when nobody listens.** Every [`IDLE_CHECK`] the hub looks
//!   whether anyone is subscribed and stops if not — on a replica that lost
//!   office (its Watch streams are ended by the gRPC edge), or after the
//!   last node went away. [`Controller::take_office`] also stops it: the
//!   changes a follower typed carry the leases and usage a follower knows
//!   (none), which the new leader must not hand out.

use crate::watch::{Change, Event};
use crate::{Controller, Error};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use trellis_store::WatchStream;

/// How often a hub looks whether anyone is still subscribed.
pub(crate) const IDLE_CHECK: Duration = Duration::from_secs(10);

/// One typed change, as the hub keeps and sends it.
#[derive(Debug)]
pub(crate) struct Typed {
    /// The hub's count of changes: unique, increasing.
    seq: u64,
    /// The store revision of the change.
    revision: u64,
    change: Change,
}

impl Typed {
    fn event(&self) -> Event {
        Event::Change(self.revision, self.change.clone())
    }
}

/// Why a hub stopped, kept to tell each of its subscribers.
#[derive(Debug, Clone)]
enum End {
    /// Its store watch fell behind the store's history.
    Compacted(u64),
    /// Its store watch, or the typing of a change, failed.
    Failed(String),
    /// The replica took office ([`Controller::take_office`]).
    TookOffice,
    /// Nobody was subscribed.
    Unwatched,
}

impl End {
    fn error(&self) -> Error {
        match self {
            End::Compacted(r) => Error::Compacted(*r),
            End::Failed(why) => {
                Error::WatchEnded(format!("the controller's watch of the store failed: {why}"))
            }
            End::TookOffice => Error::WatchEnded(
                "this controller replica took office and watches the store anew".into(),
            ),
            End::Unwatched => Error::WatchEnded("the controller stopped watching the store".into()),
        }
    }
}

struct State {
    /// `None` once the hub has stopped.
    tx: Option<broadcast::Sender<Arc<Typed>>>,
    /// The last changes, oldest first.
    ring: VecDeque<Arc<Typed>>,
    /// How many changes `ring` keeps.
    kept: usize,
    /// The oldest revision from which `ring` holds every change.
    covers_from: u64,
    /// The last sequence number given.
    seq: u64,
    /// Why it stopped.
    end: Option<End>,
}

/// One store watch, typed once, for every watcher of a controller.
pub(crate) struct Hub {
    state: Mutex<State>,
    stop: Notify,
}

impl Hub {
    /// Starts a hub on `events`, the store's events from revision `start`,
    /// typing them with `controller`, keeping `kept` changes and letting a
    /// subscriber fall `buffer` changes behind; and its first subscriber,
    /// from `start`.
    pub(crate) fn start(
        controller: Weak<Controller>,
        start: u64,
        events: WatchStream,
        kept: usize,
        buffer: usize,
    ) -> (Arc<Hub>, Subscription) {
        let hub = Arc::new(Hub {
            state: Mutex::new(State {
                tx: Some(broadcast::channel(buffer.max(1)).0),
                ring: VecDeque::new(),
                kept: kept.max(1),
                covers_from: start,
                seq: 0,
                end: None,
            }),
            stop: Notify::new(),
        });
        let first = Self::join(&hub, &hub.lock(), start).expect("a hub not yet run is running");
        tokio::spawn(Arc::clone(&hub).run(controller, events));
        (hub, first)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole; a panic elsewhere while it
        // was held does not make it wrong.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the changes from revision `from`: every change the
    /// ring holds from there, then every change published after. `None`:
    /// the hub has stopped.
    pub(crate) fn subscribe(self: &Arc<Self>, from: u64) -> Option<Subscription> {
        Self::join(self, &self.lock(), from)
    }

    fn join(hub: &Arc<Hub>, st: &State, from: u64) -> Option<Subscription> {
        // Subscribed under the lock that publishing takes: nothing falls
        // between the ring's copy and the subscription.
        let rx = st.tx.as_ref()?.subscribe();
        let start = from.max(st.covers_from);
        Some(Subscription {
            hub: Arc::clone(hub),
            replay: st
                .ring
                .iter()
                .filter(|t| t.revision >= start)
                .cloned()
                .collect(),
            rx,
            from: start,
            behind: (from < st.covers_from).then_some(st.covers_from),
            last_seq: 0,
        })
    }

    /// Stops the hub: its subscribers' streams end, saying why.
    pub(crate) fn stop(&self) {
        self.end(End::TookOffice);
        self.stop.notify_one();
    }

    fn end(&self, why: End) {
        let mut st = self.lock();
        if st.tx.take().is_some() {
            st.end = Some(why);
        }
        st.ring.clear();
    }

    /// The error a subscriber of a stopped hub ends with.
    fn end_error(&self) -> Error {
        self.lock().end.clone().unwrap_or(End::Unwatched).error()
    }

    fn publish(&self, revision: u64, change: Change) {
        let mut st = self.lock();
        if st.tx.is_none() {
            return;
        }
        st.seq += 1;
        let typed = Arc::new(Typed {
            seq: st.seq,
            revision,
            change,
        });
        st.ring.push_back(Arc::clone(&typed));
        if st.ring.len() > st.kept
            && let Some(old) = st.ring.pop_front()
        {
            st.covers_from = st.covers_from.max(old.revision + 1);
        }
        if let Some(tx) = &st.tx {
            // No subscriber: nobody to tell (the idle check stops the hub).
            let _ = tx.send(typed);
        }
    }

    /// Stops the hub if nobody is subscribed; whether it did.
    fn stop_if_unwatched(&self) -> bool {
        let mut st = self.lock();
        if st.tx.as_ref().is_some_and(|tx| tx.receiver_count() > 0) {
            return false;
        }
        st.tx = None;
        st.end.get_or_insert(End::Unwatched);
        st.ring.clear();
        true
    }

    async fn run(self: Arc<Self>, controller: Weak<Controller>, mut events: WatchStream) {
        let mut idle =
            tokio::time::interval_at(tokio::time::Instant::now() + IDLE_CHECK, IDLE_CHECK);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let e = tokio::select! {
                () = self.stop.notified() => return,
                _ = idle.tick() => {
                    if self.stop_if_unwatched() {
                        tracing::debug!("nobody watches the controller: its store watch stops");
                        return;
                    }
                    continue;
                }
                e = events.next() => e,
            };
            let e = match e {
                Some(Ok(e)) => e,
                Some(Err(trellis_store::Error::Compacted { requested, .. })) => {
                    break End::Compacted(requested);
                }
                Some(Err(e)) => break End::Failed(e.to_string()),
                None => break End::Failed("the store ended the watch".into()),
            };
            let Some(controller) = controller.upgrade() else {
                break End::Unwatched;
            };
            match controller.change(e).await {
                Ok(Some(Event::Change(revision, change))) => self.publish(revision, change),
                // A guard node, not a cluster object.
                Ok(_) => {}
                Err(e) => break End::Failed(e.to_string()),
            }
        };
        tracing::warn!(why = ?end, "the controller's watch of the store ended: its watchers watch again");
        self.end(end);
    }
}

/// One watcher's place in a hub.
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    /// The ring's changes from `from`, copied as the watcher subscribed.
    replay: VecDeque<Arc<Typed>>,
    rx: broadcast::Receiver<Arc<Typed>>,
    /// The first revision this watcher takes from the hub.
    from: u64,
    /// See [`Subscription::behind`].
    behind: Option<u64>,
    /// The last change yielded.
    last_seq: u64,
}

impl Subscription {
    /// The revision from which the hub holds every change, when it is after
    /// the one asked for: the changes before it must be read from the store.
    pub(crate) fn behind(&self) -> Option<u64> {
        self.behind
    }

    /// The next change; an error (cut off behind the others, or the hub
    /// stopped) ends the subscription.
    pub(crate) async fn next(&mut self) -> Result<Event, Error> {
        loop {
            let typed = match self.replay.pop_front() {
                Some(t) => t,
                None => match self.rx.recv().await {
                    Ok(t) => t,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Err(Error::WatchEnded(format!(
                            "this watcher fell {n} changes behind the others and was cut off"
                        )));
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(self.hub.end_error()),
                },
            };
            if typed.seq > self.last_seq && typed.revision >= self.from {
                self.last_seq = typed.seq;
                return Ok(typed.event());
            }
        }
    }
}
