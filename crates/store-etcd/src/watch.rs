//! Watches: one etcd `Watch` stream per trellis watch, resumed on another
//! member when its member goes away.
//!
//! * **Created, then checked for compaction.** [`watch`] waits for etcd's
//!   `created` answer, so the watch is in place when it returns (a write
//!   after it is seen). etcd reports a start revision older than its
//!   compaction only later, as a message on the stream; so a watch that
//!   replays history also reads the range at its start revision, which etcd
//!   refuses at once if that revision is compacted, and then [`watch`] fails
//!   with [`Error::Compacted`] as the memory and redb stores do. A
//!   compaction that lands after that check arrives as an `Err` item, which
//!   ends the stream (the trait allows both).
//! * **Resumed transparently.** The stream remembers the revision after the
//!   last event it received (a watch "from now" reads the current revision
//!   first and starts after it, so it knows even before its first event).
//!   When the member closes the stream or dies, a new etcd watch is
//!   created from that revision on whichever member answers ([`Endpoints::call`](crate::endpoints::Endpoints::call)), so
//!   the caller sees no gap and no repeat. etcd sends all of one revision's
//!   events in one message, so a revision is never half-received. The
//!   request carries `hasleader`: a member cut off from its leader cancels
//!   the watch instead of going silent, and it resumes elsewhere.
//! * **Siblings dropped here.** The etcd range of a prefix holds a few
//!   siblings (see [`crate::keys`]); their events are skipped (they still
//!   advance the resume revision).

use crate::endpoints::{MAX_MESSAGE, REQUEST_TIMEOUT, Retry, request};
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use crate::pb::mvccpb::event::EventType;
use crate::store::{Inner, kv, rev};
use crate::txn::revision;
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use tonic::{Code, Status, Streaming};
use trellis_store::{Error, WatchEvent, WatchStream};

/// How many times a broken watch is created again (each time failing over
/// across every member for up to [`crate::FAILOVER_DEADLINE`]) before the
/// stream ends with the error.
const RESUME_ATTEMPTS: usize = 3;

/// A watch stream on `prefix` from `from` (0: from now on).
pub(crate) async fn watch(
    inner: Arc<Inner>,
    prefix: &str,
    from: u64,
) -> Result<WatchStream, Error> {
    let (key, range_end) = inner.ns.range(prefix);
    let mut w = Watcher {
        inner,
        prefix: prefix.to_owned(),
        key,
        range_end,
        next: from,
        events: None,
        buf: VecDeque::new(),
        done: false,
    };
    if from == 0 {
        // "From now on" made exact: from the revision after the current
        // one. (etcd's own start revision 0 would leave the resume point
        // to guess: its `created` answer's revision is read after the
        // watch is in place, and a write in between would be skipped if
        // the stream broke before delivering it.)
        w.next = w.revision_now().await? + 1;
        w.open().await?;
        return Ok(Box::pin(futures::stream::unfold(w, Watcher::next_event)));
    }
    let at = w.open().await?;
    if from <= at && w.compacted(from).await? {
        let oldest = w.compaction_notice().await;
        return Err(Error::Compacted {
            prefix: w.prefix,
            requested: from,
            // etcd's range check says only that `from` is gone, so one past
            // it is a lower bound if the stream does not say more.
            oldest: oldest.unwrap_or(from + 1),
        });
    }
    Ok(Box::pin(futures::stream::unfold(w, Watcher::next_event)))
}

/// The state of one trellis watch.
struct Watcher {
    inner: Arc<Inner>,
    prefix: String,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The revision of the next event wanted: the resume point.
    next: u64,
    /// The etcd stream, `None` when it broke.
    events: Option<Streaming<WatchResponse>>,
    /// Events received and not yet handed out.
    buf: VecDeque<WatchEvent>,
    /// The stream ended with an error; nothing more comes.
    done: bool,
}

impl Watcher {
    /// Creates an etcd watch from `self.next` on some member; returns
    /// etcd's revision as it was created.
    async fn open(&mut self) -> Result<u64, Error> {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: self.key.clone(),
                range_end: self.range_end.clone(),
                start_revision: i64::try_from(self.next).unwrap_or(i64::MAX),
                ..Default::default()
            })),
        };
        let (events, at) = self
            .inner
            .endpoints
            .call(&self.prefix, Retry::Idempotent, |ch| {
                let create = create.clone();
                async move {
                    let created = tokio::time::timeout(REQUEST_TIMEOUT, create_on(ch, create));
                    created.await.unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded("watch not created in time"))
                    })
                }
            })
            .await?;
        self.events = Some(events);
        Ok(at)
    }

    /// etcd's current revision.
    async fn revision_now(&self) -> Result<u64, Error> {
        let probe = RangeRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            limit: 1,
            count_only: true,
            ..Default::default()
        };
        let answer = self
            .inner
            .endpoints
            .call(&self.prefix, Retry::Idempotent, |ch| {
                let probe = probe.clone();
                async move { kv(ch).range(request(probe)).await }
            })
            .await?;
        Ok(revision(answer.into_inner().header))
    }

    /// Whether etcd's history before `from` is gone.
    async fn compacted(&self, from: u64) -> Result<bool, Error> {
        let probe = RangeRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            revision: i64::try_from(from).unwrap_or(i64::MAX),
            limit: 1,
            count_only: true,
            ..Default::default()
        };
        self.inner
            .endpoints
            .call(&self.prefix, Retry::Idempotent, |ch| {
                let probe = probe.clone();
                async move {
                    match kv(ch).range(request(probe)).await {
                        Ok(_) => Ok(false),
                        Err(s)
                            if s.code() == Code::OutOfRange
                                && s.message().contains("compacted") =>
                        {
                            Ok(true)
                        }
                        Err(s) => Err(s),
                    }
                }
            })
            .await
    }

    /// The compaction revision etcd sends on a watch from a compacted
    /// revision (its watchers catch up every 100 ms, so it comes soon).
    async fn compaction_notice(&mut self) -> Option<u64> {
        let events = self.events.as_mut()?;
        let notice = async {
            while let Ok(Some(answer)) = events.message().await {
                if answer.compact_revision > 0 {
                    return Some(rev(answer.compact_revision));
                }
            }
            None
        };
        tokio::time::timeout(REQUEST_TIMEOUT, notice)
            .await
            .ok()
            .flatten()
    }

    /// The stream's step: the next buffered event, else the next answer
    /// from etcd, else a resumed watch.
    async fn next_event(mut self) -> Option<(Result<WatchEvent, Error>, Self)> {
        loop {
            if let Some(event) = self.buf.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let answer = match self.events.as_mut() {
                Some(events) => events.message().await.ok().flatten(),
                None => None,
            };
            let step = match answer {
                Some(answer) => self.take(answer),
                // The member closed the stream, or went away.
                None => self.resume().await,
            };
            if let Err(e) = step {
                self.done = true;
                return Some((Err(e), self));
            }
        }
    }

    /// Buffers an answer's events under the prefix.
    fn take(&mut self, answer: WatchResponse) -> Result<(), Error> {
        if answer.compact_revision > 0 {
            return Err(Error::Compacted {
                prefix: self.prefix.clone(),
                requested: self.next,
                oldest: rev(answer.compact_revision),
            });
        }
        if answer.canceled {
            // Cancelled by the member (e.g. it lost its leader): resume.
            self.events = None;
            return Ok(());
        }
        for event in answer.events {
            let Some(kv) = event.kv else { continue };
            let revision = rev(kv.mod_revision);
            self.next = self.next.max(revision + 1);
            let Some(key) = self.inner.ns.matching(&self.prefix, &kv.key) else {
                continue;
            };
            self.buf.push_back(match EventType::try_from(event.r#type) {
                Ok(EventType::Delete) => WatchEvent::Delete { key, revision },
                _ => WatchEvent::Put {
                    key,
                    value: kv.value,
                    revision,
                },
            });
        }
        Ok(())
    }

    /// Creates the watch again from the resume point.
    async fn resume(&mut self) -> Result<(), Error> {
        self.events = None;
        let mut attempt = 1;
        loop {
            match self.open().await {
                Ok(_) => return Ok(()),
                Err(e) if attempt == RESUME_ATTEMPTS => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }
}

/// Opens a watch stream on `ch`, sends `create`, and waits for `created`.
/// The request stream stays open (a closed one would end the watch).
async fn create_on(
    ch: tonic::transport::Channel,
    create: WatchRequest,
) -> Result<(Streaming<WatchResponse>, u64), Status> {
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut events = WatchClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE)
        .watch(request(requests))
        .await?
        .into_inner();
    match events.message().await? {
        Some(a) if a.created && !a.canceled => Ok((events, revision(a.header))),
        // Refused, with a reason: an answer, not sent again.
        Some(a) => Err(Status::failed_precondition(format!(
            "etcd refused the watch: {}",
            a.cancel_reason
        ))),
        None => Err(Status::unavailable(
            "etcd closed the watch before creating it",
        )),
    }
}
