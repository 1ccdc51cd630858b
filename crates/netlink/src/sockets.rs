//! [`Sockets`]: the host namespace's long-lived rtnetlink socket, and a fresh
//! socket or thread in any other namespace for one call.

use crate::error::NetnsError;
use crate::netns::{connect, on_netns_thread, open_netns};
use crate::spec::Ns;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use trellis_types::NetnsPath;

const SOCKET: &str = "open netlink socket in";

/// The host namespace's long-lived netlink socket, plus the means to open a
/// socket or run a thread in any other namespace for one call.
///
/// Cheap to clone; trellis-link's and trellis-route's implementations share
/// one, so the daemon holds a single host socket for both.
#[derive(Clone, Debug)]
pub struct Sockets {
    host: rtnetlink::Handle,
    /// The host namespace, when it is not the process's own.
    host_fd: Option<Arc<OwnedFd>>,
}

impl Sockets {
    /// Uses the namespace the process is in as the host.
    pub async fn current() -> Result<Self, NetnsError> {
        let host = connect(None)
            .await
            .map_err(|e| e.into_error(SOCKET, &Ns::Host))?;
        Ok(Self {
            host,
            host_fd: None,
        })
    }

    /// Uses the namespace at `path` as the host (tests, nested labs).
    pub async fn in_netns(path: &NetnsPath) -> Result<Self, NetnsError> {
        let fd = Arc::new(open_netns(path)?);
        let host = connect(Some(fd.clone()))
            .await
            .map_err(|e| e.into_error(SOCKET, &Ns::Path(path.clone())))?;
        Ok(Self {
            host,
            host_fd: Some(fd),
        })
    }

    /// The host namespace when it is not the process's own (`None`: the
    /// process runs in its host, as the daemon does).
    pub fn host_netns(&self) -> Option<&OwnedFd> {
        self.host_fd.as_deref()
    }

    /// The host socket.
    pub fn host(&self) -> &rtnetlink::Handle {
        &self.host
    }

    /// A socket in `ns`: the host's own, or a fresh one for this call.
    pub async fn handle(&self, ns: &Ns) -> Result<rtnetlink::Handle, NetnsError> {
        match ns {
            Ns::Host => Ok(self.host.clone()),
            Ns::Path(path) => {
                let fd = Arc::new(open_netns(path)?);
                connect(Some(fd))
                    .await
                    .map_err(|e| e.into_error(SOCKET, ns))
            }
        }
    }

    /// Runs short blocking `work` (a few `/proc/sys` writes) in `ns`: right
    /// here when `ns` is the host and the host is the process's own namespace
    /// (the daemon: no thread, no hop, a few microseconds of blocking), else
    /// on one namespace thread. A failure is reported as `op` on `ns`.
    pub async fn run_here_or_in<T, F>(
        &self,
        ns: &Ns,
        op: &'static str,
        work: F,
    ) -> Result<T, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        if *ns == Ns::Host && self.host_fd.is_none() {
            return work().map_err(|source| NetnsError::Io {
                op,
                subject: ns.to_string(),
                source,
            });
        }
        self.run_in(ns, op, work).await
    }

    /// Runs blocking `work` on a thread inside `ns`. A failure is reported
    /// as `op` on `ns`.
    pub async fn run_in<T, F>(&self, ns: &Ns, op: &'static str, work: F) -> Result<T, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let fd = match ns {
            Ns::Host => self.host_fd.clone(),
            Ns::Path(path) => Some(Arc::new(open_netns(path)?)),
        };
        on_netns_thread(fd, work)
            .await
            .map_err(|e| e.into_error(op, ns))
    }
}
