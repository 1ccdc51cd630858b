//! Network namespaces: validating a path, and running code inside one.
//!
//! The rule: never `setns` on a thread trellis does not own, above all a
//! tokio worker (the worker would stay in the other namespace and every later
//! task on it would be confused). Work that needs a namespace runs on a
//! `std::thread` of trellis's own: one of a few long-lived workers that enter
//! the namespace for one job (for netlink: creating the socket — a socket
//! stays bound to the namespace it was created in) and return home after it
//! (trellis-link's and trellis-route's per-call sockets), or a dedicated
//! thread that [`spawn_in`] starts and that lives on there for good
//! (trellis-nat's nf_tables thread). This module is the one place in trellis
//! that calls `setns`.

use crate::error::NetnsError;
use crate::spec::Ns;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use rtnetlink::sys::AsyncSocket;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use trellis_types::{InvalidInput, NetnsPath};

/// Opens `path` and checks that it is a network namespace, without entering it.
///
/// A missing path, a directory, a regular file or another kind of namespace
/// (`/proc/self/ns/mnt`) is an [`InvalidInput`] naming the field `netns`,
/// raised before anything changes. The kind is read from the name nsfs gives
/// the open file (`/proc/self/fd/N` → `net:[4026532…]`), which needs neither
/// an ioctl (`NS_GET_NSTYPE`, so `unsafe`) nor a thread. A bind-mounted
/// namespace (`/run/netns/x`) reads back as its mount path instead, so its kind
/// is left to the kernel, which refuses a wrong `IFLA_NET_NS_FD` before it
/// creates anything ([`check_netns`] then names the field).
pub fn open_netns(path: &NetnsPath) -> Result<OwnedFd, InvalidInput> {
    let bad = |reason: String| InvalidInput::new("netns", path, reason);
    let file = File::open(path.as_path()).map_err(|e| bad(format!("cannot open: {e}")))?;
    let fs = fstatfs(&file).map_err(|e| bad(format!("cannot stat: {e}")))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(bad("is not a namespace file".into()));
    }
    let fd = OwnedFd::from(file);
    let kind = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| bad(format!("cannot read its namespace kind: {e}")))?;
    let kind = kind.to_string_lossy();
    if kind.ends_with(']') && !kind.starts_with("net:[") {
        return Err(not_a_netns(path));
    }
    Ok(fd)
}

fn not_a_netns(path: &NetnsPath) -> InvalidInput {
    InvalidInput::new("netns", path, "is a namespace but not a network namespace")
}

/// Spawns a thread named `name` that first enters the network namespace
/// `netns` (`None`: stays in the calling thread's) and then runs `work`,
/// which is told whether entering worked.
///
/// The only `setns` in trellis. The thread is trellis's own and never goes
/// back: it ends in the namespace it entered, or lives on there.
pub fn spawn_in<T, F>(name: &str, netns: Option<Arc<OwnedFd>>, work: F) -> io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce(Result<(), Errno>) -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let entered = match &netns {
                Some(fd) => nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET),
                None => Ok(()),
            };
            // Entered (or not): the namespace file is not needed any more.
            drop(netns);
            work(entered)
        })
}

/// Why work on a netns thread failed.
#[derive(Debug)]
pub(crate) enum NsError {
    /// `setns` refused (`EINVAL`: not a network namespace).
    Enter(Errno),
    /// The work itself (or the thread) failed.
    Work(io::Error),
}

impl NsError {
    /// Maps to a [`NetnsError`]: a namespace that cannot be entered because
    /// it is not a network namespace is bad input; anything else is I/O.
    pub(crate) fn into_error(self, op: &'static str, ns: &Ns) -> NetnsError {
        match (self, ns) {
            (NsError::Enter(Errno::EINVAL), Ns::Path(path)) => not_a_netns(path).into(),
            (NsError::Enter(e), _) => NetnsError::Io {
                op,
                subject: ns.to_string(),
                source: e.into(),
            },
            (NsError::Work(source), _) => NetnsError::Io {
                op,
                subject: ns.to_string(),
                source,
            },
        }
    }
}

/// Runs `work` inside `netns` (or where the process is, for `None`) on a
/// thread of trellis's own, and awaits its result without blocking the
/// runtime: on one of the [`workers`] when it can, else on a fresh thread.
pub(crate) async fn on_netns_thread<T, F>(
    netns: Option<Arc<OwnedFd>>,
    work: F,
) -> Result<T, NsError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = move |entered: Result<(), Errno>| {
        let result = match entered {
            Ok(()) => work().map_err(NsError::Work),
            Err(e) => Err(NsError::Enter(e)),
        };
        // The receiver may be gone if the caller was cancelled; nothing to do.
        let _ = tx.send(result);
    };
    if let Some(job) = workers::run(netns.clone(), Box::new(job)) {
        spawn_in("trellis-netns", netns, job).map_err(NsError::Work)?;
    }
    rx.await
        .unwrap_or_else(|_| Err(NsError::Work(io::Error::other("netns thread panicked"))))
}

/// Long-lived namespace workers: a few threads that enter a namespace for
/// one job and come back, so that a container-side session costs no thread
/// start (an attach, a detach and every port of a node-wide observe have
/// one).
///
/// A worker keeps a handle on the namespace it started in and returns to it
/// after every job, panicking job or not; a worker that cannot return ends
/// (it never takes a job in a namespace it was not sent to), and when none
/// is left, jobs go to fresh threads again.
mod workers {
    use super::Errno;
    use nix::sched::CloneFlags;
    use std::fs::File;
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::mpsc::{Receiver, Sender, channel};
    use std::sync::{Arc, Mutex, OnceLock};

    /// How many workers: namespace sessions are short (a socket opened, a
    /// few `/proc/sys` writes), a few threads keep up with any burst.
    const WORKERS: usize = 4;

    type Job = Box<dyn FnOnce(Result<(), Errno>) + Send>;
    type Queue = (Option<Arc<OwnedFd>>, Job);

    static POOL: OnceLock<Option<Mutex<Sender<Queue>>>> = OnceLock::new();

    /// Hands `job` to a worker; gives it back if there is none.
    pub(super) fn run(netns: Option<Arc<OwnedFd>>, job: Job) -> Option<Job> {
        let Some(pool) = POOL.get_or_init(start).as_ref() else {
            return Some(job);
        };
        let Ok(tx) = pool.lock() else {
            return Some(job);
        };
        match tx.send((netns, job)) {
            Ok(()) => None,
            // Every worker has ended.
            Err(back) => Some(back.0.1),
        }
    }

    fn start() -> Option<Mutex<Sender<Queue>>> {
        let (tx, rx) = channel::<Queue>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..WORKERS {
            let Ok(home) = File::open("/proc/thread-self/ns/net") else {
                break;
            };
            let rx = rx.clone();
            let home = OwnedFd::from(home);
            let spawned = std::thread::Builder::new()
                .name(format!("trellis-netns-{i}"))
                .spawn(move || work(&rx, &home));
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then(|| Mutex::new(tx))
    }

    fn work(rx: &Mutex<Receiver<Queue>>, home: &OwnedFd) {
        loop {
            let next = match rx.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok((netns, job)) = next else { return };
            let entered = match &netns {
                Some(fd) => nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET),
                None => Ok(()),
            };
            drop(netns);
            let away = entered.is_ok();
            // A panicking job must not leave the worker in its namespace.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(entered)));
            if away && nix::sched::setns(home.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
                tracing::error!("a namespace worker could not return home; it ends");
                return;
            }
        }
    }
}

/// Checks that `path` is a network namespace by entering it on a throwaway
/// thread. Used to explain a kernel `EINVAL` after the fact, so that the fast
/// path pays nothing for it.
pub async fn check_netns(path: &NetnsPath) -> Result<(), NetnsError> {
    let fd = Arc::new(open_netns(path)?);
    on_netns_thread(Some(fd), || Ok(()))
        .await
        .map_err(|e| e.into_error("enter", &Ns::Path(path.clone())))
}

/// Opens an rtnetlink socket inside `netns` (`None`: the current namespace) and
/// spawns its connection task on the current runtime.
pub(crate) async fn connect(netns: Option<Arc<OwnedFd>>) -> Result<rtnetlink::Handle, NsError> {
    let runtime = tokio::runtime::Handle::current();
    let (conn, handle) = on_netns_thread(netns, move || {
        // The socket registers with the runtime's reactor at creation.
        let _guard = runtime.enter();
        let (mut conn, handle, _) = rtnetlink::new_connection()?;
        grow_receive_buffer(conn.socket_mut().socket_ref());
        Ok((conn, handle))
    })
    .await?;
    // The task ends once every clone of `handle` is dropped.
    tokio::spawn(conn);
    Ok(handle)
}

/// Receive buffer asked for each netlink socket: the host socket is shared
/// by every request under way, and answers queued faster than the
/// connection reads them must not overflow it (the kernel would drop them;
/// see `nl::WINDOW`).
const RECEIVE_BUFFER: usize = 4 << 20;

/// Grows a socket's receive buffer to [`RECEIVE_BUFFER`]: past
/// `net.core.rmem_max` with `SO_RCVBUFFORCE` where trellis may (root),
/// else up to that limit.
fn grow_receive_buffer(socket: &rtnetlink::sys::Socket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER);
    }
}
