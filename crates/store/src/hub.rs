//! The in-process watch hub shared by the memory and redb backends.
//!
//! The hub keeps the last `limit` events (one per revision, so the kept
//! history is the contiguous range `first_kept..=current`) and a
//! `tokio::sync::watch` channel carrying the current revision. A watch stream
//! does not receive events through a channel: it remembers the next revision
//! it wants, reads matching events out of the history under the lock, and
//! sleeps on the revision channel when it has caught up. So a slow watcher
//! never makes a writer wait or a channel overflow; it only risks falling out
//! of the window, which it reports as [`Error::Compacted`].
//!
//! Backends call [`Hub::publish`] while still holding their write lock, so
//! events enter the history in revision order.

use crate::{Error, WatchEvent, WatchStream, key_matches};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// Bounded event history plus a "new revision" signal.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    revision: watch::Sender<u64>,
}

struct HubState {
    /// The newest revision published.
    current: u64,
    /// The oldest revision still in `history` (`current + 1` when empty).
    first_kept: u64,
    history: VecDeque<WatchEvent>,
    limit: usize,
}

impl Hub {
    /// A hub for a store at revision `current` with no history yet, keeping at
    /// most `limit` events.
    pub(crate) fn new(current: u64, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HubState {
                current,
                first_kept: current + 1,
                history: VecDeque::new(),
                limit: limit.max(1),
            }),
            revision: watch::channel(current).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding this lock cannot leave the history half-updated
        // in a way that matters more than the panic itself; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `event`, whose revision must be the current revision plus one.
    pub(crate) fn publish(&self, event: WatchEvent) {
        let revision = event.revision();
        {
            let mut st = self.lock();
            debug_assert_eq!(
                revision,
                st.current + 1,
                "events must be published in order"
            );
            st.current = revision;
            st.history.push_back(event);
            while st.history.len() > st.limit {
                st.history.pop_front();
                st.first_kept += 1;
            }
        }
        self.revision.send_replace(revision);
    }

    /// A stream of events under `prefix` from `from` (0: from now on).
    pub(crate) fn watch(self: &Arc<Self>, prefix: &str, from: u64) -> Result<WatchStream, Error> {
        let mut rx = self.revision.subscribe();
        rx.mark_unchanged();
        let next = {
            let st = self.lock();
            let next = if from == 0 { st.current + 1 } else { from };
            st.check_kept(prefix, next)?;
            next
        };
        let state = WatchState {
            hub: Arc::clone(self),
            prefix: prefix.to_owned(),
            next,
            rx,
            buf: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, next_event)))
    }

    /// Events under `prefix` with revision `>= next`, and the revision to ask
    /// for next time.
    fn collect(&self, prefix: &str, next: u64) -> Result<(Vec<WatchEvent>, u64), Error> {
        let st = self.lock();
        st.check_kept(prefix, next)?;
        if next > st.current {
            return Ok((Vec::new(), next));
        }
        let skip = usize::try_from(next - st.first_kept).unwrap_or(usize::MAX);
        let events = st
            .history
            .iter()
            .skip(skip)
            .filter(|e| key_matches(prefix, e.key()))
            .cloned()
            .collect();
        Ok((events, st.current + 1))
    }
}

impl HubState {
    fn check_kept(&self, prefix: &str, next: u64) -> Result<(), Error> {
        if next < self.first_kept && next <= self.current {
            return Err(Error::Compacted {
                prefix: prefix.to_owned(),
                requested: next,
                oldest: self.first_kept,
            });
        }
        Ok(())
    }
}

struct WatchState {
    hub: Arc<Hub>,
    prefix: String,
    next: u64,
    rx: watch::Receiver<u64>,
    buf: VecDeque<WatchEvent>,
    done: bool,
}

async fn next_event(mut st: WatchState) -> Option<(Result<WatchEvent, Error>, WatchState)> {
    loop {
        if st.done {
            return None;
        }
        if let Some(event) = st.buf.pop_front() {
            return Some((Ok(event), st));
        }
        // Mark the signal seen *before* reading the history, so a publish that
        // lands after the read wakes the `changed()` below.
        st.rx.borrow_and_update();
        match st.hub.collect(&st.prefix, st.next) {
            Err(e) => {
                st.done = true;
                return Some((Err(e), st));
            }
            Ok((events, next)) => {
                st.next = next;
                st.buf.extend(events);
            }
        }
        if st.buf.is_empty() && st.rx.changed().await.is_err() {
            // The hub lives as long as this stream holds it, so the sender
            // cannot be gone; end quietly if it ever is.
            return None;
        }
    }
}
