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
    /// Bumped by [`Hub::reset`]: a stream opened before it ends.
    generation: u64,
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
                generation: 0,
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

    /// The newest revision published.
    pub(crate) fn current(&self) -> u64 {
        self.lock().current
    }

    /// Forgets the history, as when published events turned out not to
    /// have happened (a backend lost writes it had made visible): the
    /// revision becomes `current`, and every stream opened before ends with
    /// [`Error::Compacted`], so that its watcher re-lists.
    pub(crate) fn reset(&self, current: u64) {
        {
            let mut st = self.lock();
            st.current = current;
            st.first_kept = current + 1;
            st.history.clear();
            st.generation += 1;
        }
        self.revision.send_replace(current);
    }

    /// A stream of events under `prefix` from `from` (0: from now on).
    pub(crate) fn watch(self: &Arc<Self>, prefix: &str, from: u64) -> Result<WatchStream, Error> {
        let mut rx = self.revision.subscribe();
        rx.mark_unchanged();
        let (next, generation) = {
            let st = self.lock();
            let next = if from == 0 { st.current + 1 } else { from };
            st.check_kept(prefix, next)?;
            (next, st.generation)
        };
        let state = WatchState {
            hub: Arc::clone(self),
            prefix: prefix.to_owned(),
            next,
            generation,
            rx,
            buf: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, next_event)))
    }

    /// Events under `prefix` with revision `>= next`, and the revision to ask
    /// for next time.
    fn collect(
        &self,
        prefix: &str,
        next: u64,
        generation: u64,
    ) -> Result<(Vec<WatchEvent>, u64), Error> {
        let st = self.lock();
        if st.generation != generation {
            return Err(Error::Compacted {
                prefix: prefix.to_owned(),
                requested: next,
                oldest: st.first_kept,
            });
        }
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
    generation: u64,
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
        match st.hub.collect(&st.prefix, st.next, st.generation) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn put(key: &str, revision: u64) -> WatchEvent {
        WatchEvent::Put {
            key: key.to_owned(),
            value: Vec::new(),
            revision,
        }
    }

    #[tokio::test]
    async fn a_reset_ends_every_stream_so_that_watchers_re_list() {
        let hub = Hub::new(10, 100);
        let mut caught_up = hub.watch("a", 0).unwrap();
        let mut behind = hub.watch("a", 11).unwrap();
        hub.publish(put("a/1", 11));
        assert_eq!(caught_up.next().await.unwrap().unwrap(), put("a/1", 11));
        // Revision 11 turned out not to have happened; the store goes on
        // from 11 without it.
        hub.reset(11);
        for stream in [&mut caught_up, &mut behind] {
            assert!(matches!(
                stream.next().await,
                Some(Err(Error::Compacted { .. }))
            ));
            assert!(stream.next().await.is_none());
        }
        assert_eq!(hub.current(), 11);
        // A watch opened after the reset follows the new history.
        let mut fresh = hub.watch("a", 0).unwrap();
        hub.publish(put("a/2", 12));
        assert_eq!(fresh.next().await.unwrap().unwrap(), put("a/2", 12));
    }
}
