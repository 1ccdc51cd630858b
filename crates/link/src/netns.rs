//! Network namespaces: validating a path, running code inside one, and opening
//! a netlink socket that lives in it.
//!
//! The rule: never `setns` on a tokio worker thread (the worker would stay in
//! the other namespace and every later task on it would be confused). Work
//! that needs a namespace runs on a short-lived, dedicated `std::thread` that
//! enters it, does the work (for netlink: creates the socket — a socket stays
//! bound to the namespace it was created in) and exits.

use crate::error::LinkError;
use crate::host::{NetnsId, ReservedNetns, reserved_netns};
use crate::spec::Ns;
use nix::errno::Errno;
use nix::sched::CloneFlags;

const SOCKET: &str = "open netlink socket in";
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
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
pub fn open_netns(path: &NetnsPath) -> Result<OwnedFd, LinkError> {
    let bad = |reason: String| LinkError::Invalid(InvalidInput::new("netns", path, reason));
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

/// Opens `path` as [`open_netns`] does and returns the identity of the
/// namespace behind it.
pub fn netns_identity(path: &NetnsPath) -> Result<NetnsId, LinkError> {
    let fd = open_netns(path)?;
    NetnsId::of(&fd).map_err(|e| {
        LinkError::Invalid(InvalidInput::new(
            "netns",
            path,
            format!("cannot stat: {e}"),
        ))
    })
}

fn not_a_netns(path: &NetnsPath) -> LinkError {
    LinkError::Invalid(InvalidInput::new(
        "netns",
        path,
        "is a namespace but not a network namespace",
    ))
}

/// Why work on a netns thread failed.
#[derive(Debug)]
pub enum NsError {
    /// The path is not a namespace file (already a [`LinkError::Invalid`]).
    Open(Box<LinkError>),
    /// `setns` refused (`EINVAL`: not a network namespace).
    Enter(Errno),
    /// The work itself (or the thread) failed.
    Work(io::Error),
}

impl NsError {
    /// Maps to a [`LinkError`]: a namespace that cannot be entered because it
    /// is not a network namespace is bad input; anything else is I/O.
    pub fn into_link_error(self, op: &'static str, ns: &Ns) -> LinkError {
        match (self, ns) {
            (NsError::Open(e), _) => *e,
            (NsError::Enter(Errno::EINVAL), Ns::Path(path)) => not_a_netns(path),
            (NsError::Enter(e), _) => LinkError::Io {
                op,
                subject: ns.to_string(),
                source: e.into(),
            },
            (NsError::Work(source), _) => LinkError::Io {
                op,
                subject: ns.to_string(),
                source,
            },
        }
    }
}

/// Runs `work` on a fresh thread that has entered `netns` (or stays where the
/// process is, for `None`), and awaits its result without blocking the runtime.
pub async fn on_netns_thread<T, F>(netns: Option<Arc<OwnedFd>>, work: F) -> Result<T, NsError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("trellis-netns".into())
        .spawn(move || {
            let entered = match &netns {
                Some(fd) => nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET),
                None => Ok(()),
            };
            let result = match entered {
                Ok(()) => work().map_err(NsError::Work),
                Err(e) => Err(NsError::Enter(e)),
            };
            // The receiver may be gone if the caller was cancelled; nothing to do.
            let _ = tx.send(result);
        })
        .map_err(NsError::Work)?;
    rx.await
        .unwrap_or_else(|_| Err(NsError::Work(io::Error::other("netns thread panicked"))))
}

/// Checks that `path` is a network namespace by entering it on a throwaway
/// thread. Used to explain a kernel `EINVAL` after the fact, so that the fast
/// path pays nothing for it.
pub async fn check_netns(path: &NetnsPath) -> Result<(), LinkError> {
    let fd = Arc::new(open_netns(path)?);
    on_netns_thread(Some(fd), || Ok(()))
        .await
        .map_err(|e| e.into_link_error("enter", &Ns::Path(path.clone())))
}

/// Opens an rtnetlink socket inside `netns` (`None`: the current namespace) and
/// spawns its connection task on the current runtime.
pub async fn connect(netns: Option<Arc<OwnedFd>>) -> Result<rtnetlink::Handle, NsError> {
    let runtime = tokio::runtime::Handle::current();
    let (conn, handle) = on_netns_thread(netns, move || {
        // The socket registers with the runtime's reactor at creation.
        let _guard = runtime.enter();
        let (conn, handle, _) = rtnetlink::new_connection()?;
        Ok((conn, handle))
    })
    .await?;
    // The task ends once every clone of `handle` is dropped.
    tokio::spawn(conn);
    Ok(handle)
}

/// The host namespace's long-lived netlink socket, plus the means to open a
/// socket or run a thread in any other namespace for one call.
///
/// Cheap to clone; share one between [`crate::NetlinkLinks`] and the route crate.
#[derive(Clone, Debug)]
pub struct Sockets {
    host: rtnetlink::Handle,
    host_fd: Option<Arc<OwnedFd>>,
    /// Namespaces never to be taken for a container's (read once, here).
    reserved: Arc<Vec<ReservedNetns>>,
}

impl Sockets {
    /// Uses the namespace the process is in as the host.
    pub async fn current() -> Result<Self, LinkError> {
        let host = connect(None)
            .await
            .map_err(|e| e.into_link_error(SOCKET, &Ns::Host))?;
        Ok(Self {
            host,
            host_fd: None,
            reserved: Arc::new(reserved_netns(None)),
        })
    }

    /// Uses the namespace at `path` as the host (tests, nested labs).
    pub async fn in_netns(path: &NetnsPath) -> Result<Self, LinkError> {
        let fd = Arc::new(open_netns(path)?);
        let host = connect(Some(fd.clone()))
            .await
            .map_err(|e| e.into_link_error(SOCKET, &Ns::Path(path.clone())))?;
        Ok(Self {
            host,
            reserved: Arc::new(reserved_netns(Some(&*fd))),
            host_fd: Some(fd),
        })
    }

    /// The namespaces that are never a container's (see
    /// [`crate::host::reserved_netns`]).
    pub fn reserved(&self) -> &[ReservedNetns] {
        &self.reserved
    }

    /// The host socket.
    pub fn host(&self) -> &rtnetlink::Handle {
        &self.host
    }

    /// A socket in `ns`: the host's own, or a fresh one for this call.
    pub async fn handle(&self, ns: &Ns) -> Result<rtnetlink::Handle, LinkError> {
        match ns {
            Ns::Host => Ok(self.host.clone()),
            Ns::Path(path) => {
                let fd = Arc::new(open_netns(path)?);
                connect(Some(fd))
                    .await
                    .map_err(|e| e.into_link_error(SOCKET, ns))
            }
        }
    }

    /// Runs short blocking `work` (a few `/proc/sys` writes) in `ns`: right
    /// here when `ns` is the host and the host is the process's own namespace
    /// (the daemon: no thread, no hop, a few microseconds of blocking), else
    /// on one namespace thread.
    pub async fn run_here_or_in<T, F>(&self, ns: &Ns, work: F) -> Result<T, NsError>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        if *ns == Ns::Host && self.host_fd.is_none() {
            return work().map_err(NsError::Work);
        }
        self.run_in(ns, work).await
    }

    /// Runs blocking `work` on a thread inside `ns`.
    pub async fn run_in<T, F>(&self, ns: &Ns, work: F) -> Result<T, NsError>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let fd = match ns {
            Ns::Host => self.host_fd.clone(),
            Ns::Path(path) => Some(Arc::new(
                open_netns(path).map_err(|e| NsError::Open(Box::new(e)))?,
            )),
        };
        on_netns_thread(fd, work).await
    }
}
