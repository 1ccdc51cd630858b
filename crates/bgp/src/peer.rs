//! One peer's life: get a connection (connect out with backoff, or take one
//! the listener hands over), run a session on it, and again, until stopped.
//!
//! * **Active peers** connect out and refuse incoming connections; **passive
//!   peers** only take incoming ones. Each peer is one or the other, so there
//!   is never a connection collision to resolve (RFC 4271 §6.8).
//! * **A passive peer's new connection replaces its current session**: a
//!   router that restarted reconnects before our hold timer notices the old
//!   session is dead, and graceful restart wants the new session at once.
//! * **Backoff** doubles from `connect_retry` to `connect_retry_max`, with
//!   jitter so that nodes restarted together do not reconnect in step, and
//!   starts again from the bottom after a session that got established.

use crate::config::{PeerConfig, SpeakerConfig};
use crate::session::{self, Ctx, Exports, Stop};
use crate::status::{PeerStatus, SessionState};
use crate::wire::canonical;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout};

/// What the peer task owns.
pub(crate) struct PeerTask {
    pub speaker: Arc<SpeakerConfig>,
    pub config: PeerConfig,
    pub status: Arc<Mutex<PeerStatus>>,
    pub exports: watch::Receiver<Exports>,
    pub incoming: mpsc::Receiver<TcpStream>,
    pub stop: mpsc::Receiver<Stop>,
}

impl PeerTask {
    pub async fn run(self) {
        let PeerTask {
            speaker,
            config,
            status,
            exports,
            mut incoming,
            mut stop,
        } = self;
        let mut ctx = Ctx {
            speaker: speaker.clone(),
            peer: config.clone(),
            status: status.clone(),
            exports,
            restarted: true,
        };
        let mut backoff = speaker.connect_retry;
        let mut pending: Option<TcpStream> = None;
        loop {
            let stream = if let Some(s) = pending.take() {
                s
            } else if config.passive {
                status.lock().expect("status lock").state = SessionState::Active;
                tokio::select! {
                    s = incoming.recv() => match s { Some(s) => s, None => return },
                    _ = stop.recv() => return,
                }
            } else {
                status.lock().expect("status lock").state = SessionState::Connect;
                tokio::select! {
                    r = connect(&config, speaker.open_timeout) => match r {
                        Ok(s) => s,
                        Err(e) => {
                            {
                                let mut st = status.lock().expect("status lock");
                                st.state = SessionState::Idle;
                                st.counters.connect_failures += 1;
                                st.last_error = Some(e);
                            }
                            if wait(&mut backoff, &speaker, &mut stop).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    },
                    _ = stop.recv() => return,
                }
            };
            let local = match stream.local_addr() {
                Ok(a) => canonical(a.ip()),
                Err(e) => {
                    status.lock().expect("status lock").last_error =
                        Some(format!("the connection's local address: {e}"));
                    continue;
                }
            };
            let before = status.lock().expect("status lock").counters.established;
            let ended = {
                let session = session::run(stream, local, &mut ctx, &mut stop);
                tokio::pin!(session);
                if config.passive {
                    tokio::select! {
                        r = &mut session => r,
                        s = incoming.recv() => match s {
                            Some(s) => {
                                tracing::info!(peer = %config.address, "the peer connected again: the new connection replaces the session");
                                pending = Some(s);
                                Err("replaced by a new connection from the peer".into())
                            }
                            None => return,
                        },
                    }
                } else {
                    session.await
                }
            };
            ctx.restarted = false;
            match ended {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(peer = %config.address, error = %e, "BGP session ended");
                    let mut st = status.lock().expect("status lock");
                    st.last_error = Some(e);
                    st.negotiated = None;
                }
            }
            let was_up = status.lock().expect("status lock").counters.established > before;
            if was_up {
                backoff = speaker.connect_retry;
            }
            if !config.passive
                && pending.is_none()
                && wait(&mut backoff, &speaker, &mut stop).await.is_err()
            {
                return;
            }
        }
    }
}

/// Sleeps the backoff (with jitter) and doubles it; `Err` if stopped
/// meanwhile.
async fn wait(
    backoff: &mut Duration,
    speaker: &SpeakerConfig,
    stop: &mut mpsc::Receiver<Stop>,
) -> Result<(), ()> {
    let jitter = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 1000;
    // 75 % to 100 % of the backoff.
    let d = backoff.mul_f64(0.75 + 0.25 * (jitter as f64 / 1000.0));
    *backoff = (*backoff * 2).min(speaker.connect_retry_max);
    tokio::select! {
        () = sleep(d) => Ok(()),
        _ = stop.recv() => Err(()),
    }
}

/// Connects to the peer (from its local address, with its MD5 key).
async fn connect(p: &PeerConfig, within: Duration) -> Result<TcpStream, String> {
    let to = SocketAddr::new(p.address, p.port);
    let sock = match p.address {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("a socket for {to}: {e}"))?;
    if let Some(key) = &p.md5_password {
        crate::md5::set_key(&sock, p.address, key.as_bytes())
            .map_err(|e| format!("the MD5 key for {to}: {e}"))?;
    }
    if let Some(l) = p.local_address {
        sock.bind(SocketAddr::new(l, 0))
            .map_err(|e| format!("bind {l} to connect to {to}: {e}"))?;
    }
    let _ = sock.set_nodelay(true);
    match timeout(within, sock.connect(to)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect to {to}: {e}")),
        Err(_) => Err(format!("connect to {to}: no answer in {within:?}")),
    }
}
