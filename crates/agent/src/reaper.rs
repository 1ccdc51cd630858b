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
//! A crash loses the queue, not the links: reconcile sweeps every `trx…`
//! link left in the host namespace ([`Reaper::sweep`]), and a clean stop
//! waits for the queue ([`Reaper::settle`]).

use crate::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};
use trellis_link::{Links, Ns, RETIRED_PREFIX, is_retired_name};
use trellis_types::IfName;

/// The queue of retired links and the task that deletes them.
pub(crate) struct Reaper {
    tx: mpsc::UnboundedSender<IfName>,
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
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
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

    /// Waits until every link queued before this call has been dealt with.
    pub(crate) async fn settle(&self) {
        let target = self.queued.load(Ordering::Acquire);
        let mut done = self.done.clone();
        // An error means the task ended: nothing more will be dealt with.
        let _ = done.wait_for(|d| *d >= target).await;
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
