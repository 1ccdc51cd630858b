//! The reaper: deletes retired veths in batches, off every request's path.
//!
//! Deleting a veth costs the kernel ~20 ms (unregistering a device waits for
//! RCU grace periods), and deletions made at once serialise on its lock:
//! 100 deletes in 100 requests take ~2 s, the same 100 in one request (a
//! device group) ~40 ms. So the executor never deletes a veth on a request's
//! path. It *retires* it ([`trellis_link::Links::retire_veth`]): the host
//! end down, off its bridge and renamed `trx…`, its container end down,
//! without addresses and renamed likewise — microseconds, after which the
//! endpoint's names and addresses can be used again — and hands the retired
//! name here. One task deletes whatever has gathered in one
//! [`trellis_link::Links::delete_links`] (one kernel teardown), then the
//! next gathering: the busier the node, the bigger the batch.
//!
//! The batch lingers: a teardown holds the kernel's rtnl lock for tens of
//! milliseconds, and an attach that arrives meanwhile waits for it. So the
//! reaper deletes at most once per [`LINGER`] (sooner once [`BACKLOG`]
//! links wait, or when asked to [`Reaper::settle`]): under a steady stream
//! of attaches and detaches one attach in that interval pays one batched
//! teardown, instead of every attach after a detach paying one.
//!
//! A crash loses the queue, not the links: reconcile sweeps every `trx…`
//! link left in the host namespace ([`Reaper::sweep`]), and a clean stop
//! waits for the queue ([`Reaper::settle`]).

use crate::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use trellis_link::{Links, Ns, RETIRED_PREFIX, is_retired_name};
use trellis_types::IfName;

/// How long retired links gather before a batch is deleted.
pub(crate) const LINGER: Duration = Duration::from_millis(500);
/// How many waiting links start a batch at once.
pub(crate) const BACKLOG: usize = 256;

/// The queue of retired links and the task that deletes them.
pub(crate) struct Reaper {
    tx: mpsc::UnboundedSender<IfName>,
    /// Deletes what has gathered now, without lingering.
    flush: Arc<Notify>,
    /// Names handed in so far.
    queued: AtomicU64,
    /// Names dealt with so far (deleted, or given up on with a warning).
    done: watch::Receiver<u64>,
}

impl Reaper {
    /// Starts the deleting task on the current runtime. It ends once the
    /// reaper is dropped and its queue is empty.
    pub(crate) fn start(links: Arc<dyn Links>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<IfName>();
        let (done_tx, done) = watch::channel(0u64);
        let flush = Arc::new(Notify::new());
        let flushed = flush.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let linger = tokio::time::sleep(LINGER);
                tokio::pin!(linger);
                while batch.len() < BACKLOG {
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(name) => batch.push(name),
                            None => break,
                        },
                        () = &mut linger => break,
                        () = flushed.notified() => break,
                    }
                }
                while let Ok(name) = rx.try_recv() {
                    batch.push(name);
                }
                if let Err(e) = links.delete_links(&batch).await {
                    // Left for the next reconcile's sweep.
                    tracing::warn!(error = %e, links = batch.len(), "delete retired links");
                }
                done_tx.send_modify(|d| *d += batch.len() as u64);
            }
        });
        Reaper {
            tx,
            flush,
            queued: AtomicU64::new(0),
            done,
        }
    }

    /// Queues retired links for deletion.
    pub(crate) fn submit(&self, names: Vec<IfName>) {
        for name in names {
            self.queued.fetch_add(1, Ordering::AcqRel);
            if self.tx.send(name).is_err() {
                // The task is gone (its runtime is shutting down): the
                // sweep of the next reconcile deletes it.
                self.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Waits until every link queued before this call has been dealt with,
    /// deleting what has gathered without lingering.
    pub(crate) async fn settle(&self) {
        let target = self.queued.load(Ordering::Acquire);
        let mut done = self.done.clone();
        loop {
            if *done.borrow() >= target {
                return;
            }
            // A stored permit: a batch being deleted now is followed at once
            // by the next; asked again while more batches are needed.
            self.flush.notify_one();
            let waited = tokio::time::timeout(Duration::from_millis(100), done.changed()).await;
            if let Ok(Err(_)) = waited {
                // The task ended: nothing more will be dealt with.
                return;
            }
        }
    }

    /// Queues every retired link in the host namespace (those a crash left
    /// behind); how many.
    pub(crate) async fn sweep(&self, links: &dyn Links) -> Result<usize, Error> {
        let left: Vec<IfName> = links
            .list_links_with_prefix(&Ns::Host, RETIRED_PREFIX)
            .await?
            .into_iter()
            .filter(|l| is_retired_name(&l.name))
            .filter_map(|l| IfName::parse("ifname", &l.name).ok())
            .collect();
        let n = left.len();
        self.submit(left);
        Ok(n)
    }
}
