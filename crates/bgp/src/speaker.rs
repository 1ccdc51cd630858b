//! The speaker: the export set, the peers, and the listener passive peers
//! connect to.
//!
//! The export set is a `tokio::sync::watch` value: setting it never blocks
//! the caller, each session sees the newest set (intermediate ones a busy
//! session missed do not matter: only the difference to what the peer has
//! is sent), and setting the same set again wakes nobody.

use crate::config::{PeerConfig, SpeakerConfig};
use crate::peer::PeerTask;
use crate::session::{Exports, Stop};
use crate::status::PeerStatus;
use crate::wire::canonical;
use crate::{Error, RouteExporter};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// An export-only BGP speaker. Cheap to clone; the last clone dropped stops
/// nothing by itself — call [`Speaker::shutdown`].
#[derive(Clone)]
pub struct Speaker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<SpeakerConfig>,
    exports: watch::Sender<Exports>,
    peers: Mutex<BTreeMap<IpAddr, Peer>>,
    /// Set once, at start, when the speaker listens.
    listener: std::sync::OnceLock<Listener>,
}

struct Listener {
    addr: SocketAddr,
    /// The listening socket's fd, borrowed to set MD5 keys for passive peers.
    socket: Arc<TcpListener>,
    task: JoinHandle<()>,
}

struct Peer {
    config: PeerConfig,
    status: Arc<Mutex<PeerStatus>>,
    stop: mpsc::Sender<Stop>,
    incoming: mpsc::Sender<TcpStream>,
    task: JoinHandle<()>,
}

impl Speaker {
    /// Checks `config` and starts the speaker (and its listener, if it has
    /// one) on the current tokio runtime, with no peers and no routes.
    pub async fn start(config: SpeakerConfig) -> Result<Speaker, Error> {
        config.validate()?;
        let (exports, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            config: Arc::new(config.clone()),
            exports,
            peers: Mutex::new(BTreeMap::new()),
            listener: std::sync::OnceLock::new(),
        });
        let speaker = Speaker { inner };
        if let Some(addr) = config.listen {
            let socket = Arc::new(bind(addr)?);
            let bound = socket
                .local_addr()
                .map_err(|e| Error::io(format!("the listener's address ({addr})"), e))?;
            let weak = Arc::downgrade(&speaker.inner);
            let task = tokio::spawn(accept(socket.clone(), weak));
            let _ = speaker.inner.listener.set(Listener {
                addr: bound,
                socket,
                task,
            });
        }
        Ok(speaker)
    }

    /// The speaker's settings.
    pub fn config(&self) -> &SpeakerConfig {
        &self.inner.config
    }

    /// Where the listener is bound, if there is one.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.listener.get().map(|l| l.addr)
    }

    /// The whole set of prefixes originated now; each session sends its
    /// peer the difference. A host route (/32, /128) is as welcome as a
    /// block.
    pub fn set_routes(&self, prefixes: impl IntoIterator<Item = IpNet>) {
        let set: BTreeSet<IpNet> = prefixes.into_iter().map(|p| p.trunc()).collect();
        self.inner.exports.send_if_modified(|cur| {
            if cur.as_deref() == Some(&set) {
                false
            } else {
                *cur = Some(Arc::new(set));
                true
            }
        });
    }

    /// The set last given to [`Speaker::set_routes`].
    pub fn routes(&self) -> Option<BTreeSet<IpNet>> {
        self.inner.exports.borrow().as_deref().cloned()
    }

    /// Adds a peer and starts its session. `AlreadyExists` for an address
    /// that is a peer already; a passive peer needs the listener.
    pub fn add_peer(&self, config: PeerConfig) -> Result<(), Error> {
        config.validate()?;
        let addr = canonical(config.address);
        let mut peers = self.inner.peers.lock().expect("peers lock");
        if peers.contains_key(&addr) {
            return Err(Error::Exists(addr));
        }
        if config.passive {
            let Some(l) = self.inner.listener.get() else {
                return Err(Error::invalid(
                    "passive",
                    true,
                    "a passive peer connects to the speaker's listener, and none is configured",
                ));
            };
            if let Some(key) = &config.md5_password {
                crate::md5::set_key(&*l.socket, key_addr(l.addr, addr), key.as_bytes())
                    .map_err(|e| Error::io(format!("the MD5 key for {addr} on the listener"), e))?;
            }
        }
        let status = Arc::new(Mutex::new(PeerStatus::new(config.clone())));
        let (stop_tx, stop) = mpsc::channel(1);
        let (in_tx, incoming) = mpsc::channel(2);
        let task = tokio::spawn(
            PeerTask {
                speaker: self.inner.config.clone(),
                config: config.clone(),
                status: status.clone(),
                exports: self.inner.exports.subscribe(),
                incoming,
                stop,
            }
            .run(),
        );
        peers.insert(
            addr,
            Peer {
                config,
                status,
                stop: stop_tx,
                incoming: in_tx,
                task,
            },
        );
        Ok(())
    }

    /// Removes a peer: its session ends with Cease 6/3 and its routes go with
    /// it. `NotFound` for an address that is not a peer.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), Error> {
        let addr = canonical(address);
        let peer = self
            .inner
            .peers
            .lock()
            .expect("peers lock")
            .remove(&addr)
            .ok_or(Error::NotFound(addr))?;
        stop_peer(peer, Stop::Deconfigured).await;
        if let Some(l) = self.inner.listener.get() {
            let _ = crate::md5::set_key(&*l.socket, key_addr(l.addr, addr), b"");
        }
        Ok(())
    }

    /// Every peer's status, by address.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.inner
            .peers
            .lock()
            .expect("peers lock")
            .values()
            .map(|p| p.status.lock().expect("status lock").clone())
            .collect()
    }

    /// One peer's status.
    pub fn peer(&self, address: IpAddr) -> Option<PeerStatus> {
        let peers = self.inner.peers.lock().expect("peers lock");
        peers
            .get(&canonical(address))
            .map(|p| p.status.lock().expect("status lock").clone())
    }

    /// Stops every session: `Stop::Restart` closes them without a
    /// NOTIFICATION so that peers keep our routes through a restart (graceful
    /// restart); `Stop::Shutdown` sends Cease and peers drop them.
    pub async fn shutdown(&self, how: Stop) {
        let peers: Vec<Peer> = std::mem::take(&mut *self.inner.peers.lock().expect("peers lock"))
            .into_values()
            .collect();
        for p in &peers {
            let _ = p.stop.try_send(how);
        }
        for p in peers {
            stop_peer(p, how).await;
        }
        if let Some(l) = self.inner.listener.get() {
            l.task.abort();
        }
    }
}

/// Asks a peer's task to stop and waits for it (at most 5 s: a NOTIFICATION
/// to a peer that does not read is not worth waiting longer for).
async fn stop_peer(peer: Peer, how: Stop) {
    let _ = peer.stop.try_send(how);
    let mut task = peer.task;
    if tokio::time::timeout(Duration::from_secs(5), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

/// The form of a peer's address the listener's MD5 key takes: IPv4-mapped
/// on an IPv6 listener.
fn key_addr(listener: SocketAddr, peer: IpAddr) -> IpAddr {
    match (listener, peer) {
        (SocketAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
        _ => peer,
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| Error::io(format!("a listening socket for {addr}"), e))?;
    sock.set_reuseaddr(true)
        .map_err(|e| Error::io(format!("SO_REUSEADDR on {addr}"), e))?;
    sock.bind(addr)
        .map_err(|e| Error::io(format!("listen on {addr}"), e))?;
    sock.listen(64)
        .map_err(|e| Error::io(format!("listen on {addr}"), e))
}

/// Hands each incoming connection to its passive peer; closes the others.
async fn accept(listener: Arc<TcpListener>, inner: std::sync::Weak<Inner>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "BGP listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let ip = canonical(from.ip());
        let to = {
            let peers = inner.peers.lock().expect("peers lock");
            match peers.get(&ip) {
                Some(p) if p.config.passive => Some(p.incoming.clone()),
                Some(_) => {
                    tracing::info!(%from, "BGP: refused a connection from an active peer");
                    None
                }
                None => {
                    tracing::info!(%from, "BGP: refused a connection from an unknown address");
                    None
                }
            }
        };
        if let Some(tx) = to {
            let _ = stream.set_nodelay(true);
            let _ = tx.try_send(stream);
        }
    }
}

impl RouteExporter for Speaker {
    fn set_routes(&self, prefixes: BTreeSet<IpNet>) {
        Speaker::set_routes(self, prefixes);
    }

    fn peers(&self) -> Vec<PeerStatus> {
        Speaker::peers(self)
    }
}
