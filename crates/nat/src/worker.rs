//! The nf_tables thread: the one thread that owns an [`crate::NftNat`]'s
//! socket and does all of its I/O.
//!
//! Why a thread of its own: a read on the socket blocks until the kernel
//! answers (a dump, or up to the 5 s receive timeout if it never does), and
//! the [`crate::Nat`] methods are `async fn`s that run on tokio workers.
//! Blocking there would stall every task and timer of that worker — on a
//! current-thread runtime, all of them. So the socket is opened by, and
//! lives on, a thread named [`THREAD`], which takes jobs from a channel in
//! order and answers each through a `tokio::sync::oneshot`: the caller's task
//! awaits without holding its worker. Served one at a time, the jobs also
//! serialise read-check-write sequences (`publish` looks its ports up before
//! it sends them), as a mutex around the socket did before.
//!
//! The thread is born in the socket's namespace (trellis-netlink's
//! `spawn_in`, the one `setns` in trellis) and stays there. It ends when the
//! `NftNat` is dropped: that drops the channel's sender, and the thread
//! finishes the job in hand, returns and closes the socket. Nothing joins
//! it, since a drop on a tokio worker must not wait for the kernel either.
//! A job whose caller gave up (its future dropped) still runs: like every
//! change here it is one nf_tables batch, applied whole or not at all.

use crate::Error;
use crate::conn::Conn;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc;
use tokio::sync::oneshot;
use trellis_netlink::netns::spawn_in;

/// The name of every nf_tables thread (as `top -H` and `/proc/<pid>/task/*/comm` show it).
pub(crate) const THREAD: &str = "trellis-nft";

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The sending end of an nf_tables thread's job queue.
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread in `netns` (`None`: the calling thread's namespace)
    /// and waits until it has opened its socket, or reports why it could not.
    pub(crate) fn start(netns: Option<Arc<OwnedFd>>) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = mpsc::sync_channel(1);
        spawn_in(THREAD, netns, move |entered| {
            let conn = entered.map_err(io::Error::from).and_then(|()| Conn::open());
            let mut conn = match conn {
                Ok(conn) => {
                    let _ = ready.send(Ok(()));
                    conn
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            for job in queue {
                // A job that panics loses its answer (its caller gets an
                // error) but not the thread: every change is one batch, so
                // the socket holds nothing half-done.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
            }
        })?;
        // Construction is synchronous and short (a thread, a socket, a few
        // setsockopts): the caller waits for it as it would for `socket(2)`.
        opened
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("nf_tables thread panicked")))?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the thread with its socket and awaits the answer,
    /// without blocking the caller's thread. `op` names the call in the error
    /// for a thread that is gone.
    pub(crate) async fn run<T, F>(&self, op: &'static str, job: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T, Error> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The caller may have given up; the job has run all the same.
            let _ = answer.send(job(conn));
        });
        let failed = |why: &str| Error::Io {
            op,
            source: io::Error::other(format!("nf_tables thread: {why}")),
        };
        self.jobs.send(job).map_err(|_| failed("gone"))?;
        answered.await.map_err(|_| failed("the request panicked"))?
    }
}
