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
//! The batch waits for a quiet node: a teardown holds the kernel's rtnl
//! lock for tens of milliseconds, and every attach or detach that arrives
//! meanwhile waits for it. So the reaper deletes once no attach or detach
//! has been under way for [`QUIET`] (each holds a [`Reaper::busy`] mark) —
//! after a burst of detaches, not in the middle of it or of the attaches
//! that follow. Under load that never pauses it deletes anyway once the
//! oldest waiting link is [`MAX_AGE`] old or [`BACKLOG`] links wait, and
//! at once when asked to [`Reaper::settle`]: retired links are bounded in
//! number and age, and one request in that interval pays one batched
//! teardown instead of every request after a detach paying one.
//!
//! A crash loses the queue, not the links: reconcile sweeps every `trx…`
//! link left in the host namespace ([`Reaper::sweep`]), and a clean stop
//! waits for the queue ([`Reaper::settle`]).

use crate::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use trellis_link::{Links, Ns, RETIRED_PREFIX, is_retired_name};
use trellis_types::IfName;

/// How long no attach or detach must have been under way before a batch
/// is deleted.
pub(crate) const QUIET: Duration = Duration::from_millis(50);
/// How long the oldest waiting link waits at most, quiet node or not.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(2);
/// How many waiting links start a batch at once.
pub(crate) const BACKLOG: usize = 256;

/// Whether attaches or detaches are under way, and whether any began or
/// ended lately.
#[derive(Default)]
struct Activity {
    /// Requests under way.
    busy: AtomicUsize,
    /// Bumped when one begins or ends.
    changes: AtomicU64,
    /// Woken when the last one under way ends.
    idle: Notify,
}

impl Activity {
    /// Returns once nothing has been under way for [`QUIET`].
    async fn quiet(&self) {
        loop {
            let seen = self.changes.load(Ordering::Acquire);
            if self.busy.load(Ordering::Acquire) == 0 {
                tokio::time::sleep(QUIET).await;
                if self.changes.load(Ordering::Acquire) == seen {
                    return;
                }
            } else {
                // A stale permit only costs one more look.
                self.idle.notified().await;
            }
        }
    }
}

/// An attach or detach under way (see [`Reaper::busy`]); ends when dropped.
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.changes.fetch_add(1, Ordering::AcqRel);
        if a.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.idle.notify_one();
        }
    }
}

/// The queue of retired links and the task that deletes them.
pub(crate) struct Reaper {
    tx: mpsc::UnboundedSender<IfName>,
    /// Deletes what has gathered now, without waiting for a quiet node.
    flush: Arc<Notify>,
    /// Names handed in so far.
    queued: AtomicU64,
    /// Names dealt with so far (deleted, or given up on with a warning).
    done: watch::Receiver<u64>,
    /// Attaches and detaches under way.
    activity: Arc<Activity>,
}

impl Reaper {
    /// Starts the deleting task on the current runtime. It ends once the
    /// reaper is dropped and its queue is empty.
    pub(crate) fn start(links: Arc<dyn Links>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<IfName>();
        let (done_tx, done) = watch::channel(0u64);
        let flush = Arc::new(Notify::new());
        let flushed = flush.clone();
        let activity = Arc::new(Activity::default());
        let quiet = activity.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let max_age = tokio::time::sleep(MAX_AGE);
                tokio::pin!(max_age);
                while batch.len() < BACKLOG {
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(name) => batch.push(name),
                            None => break,
                        },
                        () = quiet.quiet() => break,
                        () = &mut max_age => break,
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
            activity,
        }
    }

    /// Marks an attach or detach under way until the mark is dropped: no
    /// batch is deleted (unless overdue) while one is.
    pub(crate) fn busy(&self) -> Busy {
        let a = &self.activity;
        a.busy.fetch_add(1, Ordering::AcqRel);
        a.changes.fetch_add(1, Ordering::AcqRel);
        Busy(a.clone())
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
    /// deleting what has gathered without waiting for a quiet node.
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

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_fake::FakeKernel;

    /// A reaper over a fake host holding the retired links `names`.
    fn reaper_with(names: &[&str]) -> (FakeKernel, Reaper) {
        let kernel = FakeKernel::new();
        for n in names {
            kernel.add_device(&Ns::Host, n, &[]);
        }
        let reaper = Reaper::start(Arc::new(kernel.clone()));
        (kernel, reaper)
    }

    fn name(s: &str) -> IfName {
        IfName::parse("ifname", s).unwrap()
    }

    fn present(kernel: &FakeKernel, n: &str) -> bool {
        kernel.link(&Ns::Host, n).is_some()
    }

    const A: &str = "trx0123456789ab";
    const B: &str = "trxba9876543210";

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_while_requests_are_under_way_and_goes_once_the_node_is_quiet() {
        let (kernel, reaper) = reaper_with(&[A, B]);
        let busy = reaper.busy();
        reaper.submit(vec![name(A)]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(present(&kernel, A), "deleted while a request was under way");
        reaper.submit(vec![name(B)]);
        drop(busy);
        tokio::time::sleep(QUIET / 2).await;
        assert!(
            present(&kernel, A),
            "deleted before the node was quiet for {QUIET:?}"
        );
        tokio::time::sleep(QUIET).await;
        assert!(!present(&kernel, A) && !present(&kernel, B));
        let deletes: Vec<_> = kernel
            .calls()
            .into_iter()
            .filter(|c| c.method == "delete_links")
            .collect();
        assert_eq!(deletes.len(), 1, "one batch: {deletes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_never_pauses_still_deletes_once_the_oldest_is_overdue() {
        let (kernel, reaper) = reaper_with(&[A]);
        reaper.submit(vec![name(A)]);
        // One request after another, never QUIET apart.
        let start = tokio::time::Instant::now();
        while start.elapsed() < MAX_AGE - QUIET {
            let _busy = reaper.busy();
            tokio::time::sleep(QUIET / 5).await;
            assert!(present(&kernel, A), "deleted at {:?}", start.elapsed());
        }
        while start.elapsed() < MAX_AGE + QUIET {
            let _busy = reaper.busy();
            tokio::time::sleep(QUIET / 5).await;
        }
        assert!(!present(&kernel, A), "still there after {MAX_AGE:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn settle_deletes_at_once_even_while_requests_are_under_way() {
        let (kernel, reaper) = reaper_with(&[A]);
        let _busy = reaper.busy();
        reaper.submit(vec![name(A)]);
        let start = tokio::time::Instant::now();
        reaper.settle().await;
        assert!(!present(&kernel, A));
        assert!(
            start.elapsed() < QUIET,
            "settle waited {:?}",
            start.elapsed()
        );
    }
}
