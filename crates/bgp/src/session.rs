//! One BGP session over one connected stream: OPEN exchange, then
//! Established until an error, a NOTIFICATION, hold-timer expiry, a closed
//! connection or a stop.
//!
//! * **Generic over the stream**, so that tests drive it over an in-memory
//!   pipe with a scripted peer and paused time (`tokio::time`): every timer
//!   here is tokio's.
//! * **Reading runs in a task of its own** ([`wire::read_frame`] is not
//!   cancel-safe) and hands whole frames over a small channel; the session
//!   loop selects over frames, timers, export changes and stop requests.
//! * **The hold timer is enforced on what is received**: any message resets
//!   it, silence for the negotiated hold time ends the session with
//!   NOTIFICATION 4/0. Writes are bounded in time too (the speaker's
//!   `open_timeout`), so a peer that stops reading cannot wedge the session.
//! * **Only differences are sent**: the session keeps what the peer has from
//!   us (`PeerStatus::advertised`) and turns each new export set into
//!   withdrawals and announcements, packed by [`wire`].
//! * **Nothing is sent before the export set is known**: after a restart the
//!   first full table and End-of-RIB go out only once the owner has said
//!   what it originates, so a graceful-restart helper keeps our stale routes
//!   until then instead of dropping them on an early, empty End-of-RIB.

use crate::config::{PeerConfig, SpeakerConfig};
use crate::status::{Negotiated, PeerStatus, SessionState};
use crate::wire::{self, Attributes, Family, Frame, Notify, ReadError, Verdict, kind};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

/// The export set: `None` until the owner first says what it originates.
pub type Exports = Option<Arc<BTreeSet<IpNet>>>;

/// Why a session is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The peer was removed: Cease 6/3.
    Deconfigured,
    /// The speaker shuts down for good: Cease 6/2.
    Shutdown,
    /// The daemon stops to restart: close without NOTIFICATION, so that a
    /// graceful-restart helper keeps our routes (RFC 4724 §4).
    Restart,
}

/// What one session needs.
pub struct Ctx {
    /// The speaker's settings.
    pub speaker: Arc<SpeakerConfig>,
    /// The peer's settings.
    pub peer: PeerConfig,
    /// The peer's status, shared with readers.
    pub status: Arc<Mutex<PeerStatus>>,
    /// The export set.
    pub exports: watch::Receiver<Exports>,
    /// Whether this is the first session since the speaker started (the
    /// graceful-restart R bit).
    pub restarted: bool,
}

/// How a session ended: `Ok` for a stop, `Err` with the reason otherwise.
pub type Ended = Result<(), String>;

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a session over `stream`, whose local address is `local`.
pub async fn run<S>(
    stream: S,
    local: IpAddr,
    ctx: &mut Ctx,
    stop: &mut mpsc::Receiver<Stop>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, mut frames) = mpsc::channel::<Result<Frame, ReadError>>(8);
    let _reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let r = wire::read_frame(&mut rd).await;
            let end = r.is_err();
            if tx.send(r).await.is_err() || end {
                return;
            }
        }
    }));
    let write_timeout = ctx.speaker.open_timeout;
    let mut s = Session {
        ctx,
        wr,
        local,
        write_timeout,
    };
    let result = s.drive(&mut frames, stop).await;
    let _ = s.wr.shutdown().await;
    {
        let mut st = s.ctx.status.lock().expect("status lock");
        st.state = if s.ctx.peer.passive {
            SessionState::Active
        } else {
            SessionState::Idle
        };
        st.up_since = None;
        st.advertised.clear();
        if let Err(e) = &result {
            st.last_error = Some(e.clone());
        }
    }
    result
}

struct Session<'a, S> {
    ctx: &'a mut Ctx,
    wr: WriteHalf<S>,
    local: IpAddr,
    write_timeout: Duration,
}

/// Per-family export state of an established session.
struct Out {
    attrs: Vec<(Family, Attributes)>,
    /// IPv4 announced in MP_REACH (an IPv6 next hop), so withdrawn there too.
    mp_v4: bool,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Session<'_, S> {
    fn status(&self) -> std::sync::MutexGuard<'_, PeerStatus> {
        self.ctx.status.lock().expect("status lock")
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        tracing::debug!(peer = %self.ctx.peer.address, kind = bytes.get(18).copied().unwrap_or(0), len = bytes.len(), "BGP message out");
        match timeout(self.write_timeout, self.wr.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write to the peer: {e}")),
            Err(_) => Err(format!(
                "the peer has read nothing for {:?}",
                self.write_timeout
            )),
        }
    }

    async fn notify(&mut self, n: Notify) -> String {
        let _ = self.send(&n.encode()).await;
        self.status().counters.notifications_out += 1;
        format!("sent NOTIFICATION: {n}")
    }

    async fn drive(
        &mut self,
        frames: &mut mpsc::Receiver<Result<Frame, ReadError>>,
        stop: &mut mpsc::Receiver<Stop>,
    ) -> Ended {
        let local_addr = self.local;
        let sp = self.ctx.speaker.clone();
        let peer = self.ctx.peer.clone();
        let our_hold = peer.hold_time.unwrap_or(sp.hold_time);
        let local_open = wire::LocalOpen {
            asn: sp.local_as,
            hold_time: our_hold,
            router_id: sp.router_id,
            families: Family::ALL.to_vec(),
            graceful_restart: sp.graceful_restart.map(|t| (t, self.ctx.restarted)),
        };
        self.status().state = SessionState::OpenSent;
        self.send(&wire::open(&local_open)).await?;
        self.status().counters.opens_out += 1;

        // OpenSent: the peer's OPEN.
        let frame = match self
            .next(frames, stop, Instant::now() + sp.open_timeout)
            .await?
        {
            Next::Frame(f) => f,
            Next::Stopped(why) => return self.stopped(why).await,
            Next::Expired => {
                let n = Notify::new(4, 0, vec![], "no OPEN from the peer in time");
                return Err(self.notify(n).await);
            }
        };
        if frame.kind != kind::OPEN {
            return Err(self.unexpected(&frame, 5, 1, "OpenSent").await);
        }
        self.status().counters.opens_in += 1;
        let open = match wire::parse_open(&frame, peer.remote_as, sp.local_as, sp.router_id) {
            Ok(o) => o,
            Err(n) => return Err(self.notify(n).await),
        };
        if !open.four_octet_as && sp.local_as > u32::from(u16::MAX) {
            let n = Notify::new(
                2,
                2,
                vec![],
                format!(
                    "the peer does not take 4-byte AS numbers, and ours ({}) needs them",
                    sp.local_as
                ),
            );
            return Err(self.notify(n).await);
        }
        let hold = our_hold.min(open.hold_time);
        let families: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|f| open.families.contains(f))
            .collect();
        let graceful = sp.graceful_restart.is_some() && open.graceful_restart.is_some();
        self.send(&wire::keepalive()).await?;
        {
            let mut st = self.status();
            st.counters.keepalives_out += 1;
            st.state = SessionState::OpenConfirm;
        }
        let hold_d = Duration::from_secs(u64::from(hold));
        let deadline = |from: Instant| {
            if hold == 0 {
                from + Duration::from_secs(86400 * 365)
            } else {
                from + hold_d
            }
        };

        // OpenConfirm: the first KEEPALIVE.
        let wait = if hold == 0 {
            Instant::now() + sp.open_timeout
        } else {
            deadline(Instant::now())
        };
        match self.next(frames, stop, wait).await? {
            Next::Frame(f) if f.kind == kind::KEEPALIVE => {
                self.status().counters.keepalives_in += 1;
            }
            Next::Frame(f) => return Err(self.unexpected(&f, 5, 2, "OpenConfirm").await),
            Next::Stopped(why) => return self.stopped(why).await,
            Next::Expired => {
                self.status().counters.hold_timer_expired += 1;
                let n = Notify::new(4, 0, vec![], "no KEEPALIVE after the OPENs");
                return Err(self.notify(n).await);
            }
        }

        // Established.
        let four = open.four_octet_as;
        let out = self.attributes(&families, four, local_addr);
        {
            let mut st = self.status();
            st.state = SessionState::Established;
            st.up_since = Some(Instant::now());
            st.counters.established += 1;
            st.advertised.clear();
            st.negotiated = Some(Negotiated {
                peer: open.clone(),
                hold_time: hold,
                families: families.clone(),
                four_octet_as: four,
                graceful_restart: graceful,
                local_address: local_addr,
                next_hops: out.attrs.iter().map(|(f, a)| (*f, a.next_hop)).collect(),
                communities: out
                    .attrs
                    .first()
                    .map(|(_, a)| a.communities.clone())
                    .unwrap_or_default(),
            });
        }
        tracing::info!(peer = %peer.address, hold, ?families, "BGP session established");
        let keepalive_every = if hold == 0 {
            Duration::from_secs(86400 * 365)
        } else {
            hold_d / 3
        };
        let mut next_keepalive = Instant::now() + keepalive_every;
        let mut hold_at = deadline(Instant::now());
        let mut synced = false;
        if self.ctx.exports.borrow().is_some() {
            self.sync(&out, true, graceful).await?;
            synced = true;
        }
        loop {
            // In this order when several are ready at once: what the peer
            // sent resets the hold timer before it is judged, and an expired
            // hold timer ends the session before another keepalive goes out.
            tokio::select! {
                biased;
                f = frames.recv() => {
                    let f = self.frame(f).await?;
                    hold_at = deadline(Instant::now());
                    self.established_frame(&f, four, &out).await?;
                }
                () = sleep_until(hold_at) => {
                    self.status().counters.hold_timer_expired += 1;
                    let n = Notify::new(4, 0, vec![], format!("nothing from the peer for {hold} s"));
                    return Err(self.notify(n).await);
                }
                () = sleep_until(next_keepalive) => {
                    self.send(&wire::keepalive()).await?;
                    self.status().counters.keepalives_out += 1;
                    next_keepalive = Instant::now() + keepalive_every;
                }
                changed = self.ctx.exports.changed() => {
                    if changed.is_err() {
                        return self.stopped(Stop::Shutdown).await;
                    }
                    self.sync(&out, !synced, graceful).await?;
                    synced = true;
                    // An UPDATE counts as a KEEPALIVE for the peer's hold timer.
                    next_keepalive = Instant::now() + keepalive_every;
                }
                why = stop.recv() => return self.stopped(why.unwrap_or(Stop::Shutdown)).await,
            }
        }
    }

    async fn stopped(&mut self, why: Stop) -> Ended {
        match why {
            Stop::Restart => {}
            Stop::Deconfigured => {
                self.notify(Notify::new(6, 3, vec![], "the peer was removed"))
                    .await;
            }
            Stop::Shutdown => {
                self.notify(Notify::new(6, 2, vec![], "the speaker shuts down"))
                    .await;
            }
        }
        Ok(())
    }

    async fn unexpected(&mut self, f: &Frame, code: u8, subcode: u8, state: &str) -> String {
        if f.kind == kind::NOTIFICATION {
            return self.received_notification(f);
        }
        let n = Notify::new(
            code,
            subcode,
            vec![],
            format!("a message of type {} in {state}", f.kind),
        );
        self.notify(n).await
    }

    fn received_notification(&self, f: &Frame) -> String {
        let (code, sub) = wire::parse_notification(f);
        self.status().counters.notifications_in += 1;
        format!(
            "the peer sent NOTIFICATION {code}/{sub} ({})",
            wire::describe(code, sub)
        )
    }

    /// A frame from the reader, or the session's end.
    async fn frame(&mut self, f: Option<Result<Frame, ReadError>>) -> Result<Frame, String> {
        match f {
            Some(Ok(f)) => Ok(f),
            Some(Err(ReadError::Header(n))) => Err(self.notify(n).await),
            Some(Err(ReadError::Io(e))) => Err(format!("read from the peer: {e}")),
            Some(Err(ReadError::Closed)) | None => Err("the peer closed the connection".into()),
        }
    }

    async fn next(
        &mut self,
        frames: &mut mpsc::Receiver<Result<Frame, ReadError>>,
        stop: &mut mpsc::Receiver<Stop>,
        until: Instant,
    ) -> Result<Next, String> {
        tokio::select! {
            f = frames.recv() => self.frame(f).await.map(Next::Frame),
            () = sleep_until(until) => Ok(Next::Expired),
            why = stop.recv() => Ok(Next::Stopped(why.unwrap_or(Stop::Shutdown))),
        }
    }

    async fn established_frame(&mut self, f: &Frame, four: bool, out: &Out) -> Result<(), String> {
        match f.kind {
            kind::KEEPALIVE => self.status().counters.keepalives_in += 1,
            kind::UPDATE => {
                let c = wire::check_update(f, four);
                {
                    let mut st = self.status();
                    st.counters.updates_in += 1;
                    match &c.verdict {
                        Verdict::Fine | Verdict::Reset(_) => {}
                        Verdict::TreatAsWithdraw(why) => {
                            st.counters.treat_as_withdraw += 1;
                            st.last_error = Some(format!("UPDATE treated as withdraw: {why}"));
                        }
                        Verdict::AttributeDiscard(why) => {
                            st.counters.attributes_discarded += 1;
                            st.last_error = Some(format!("UPDATE attribute discarded: {why}"));
                        }
                    }
                }
                match c.verdict {
                    Verdict::Reset(n) => return Err(self.notify(n).await),
                    Verdict::TreatAsWithdraw(why) | Verdict::AttributeDiscard(why) => {
                        tracing::warn!(peer = %self.ctx.peer.address, %why, "malformed UPDATE (RFC 7606)");
                    }
                    Verdict::Fine => {}
                }
            }
            kind::ROUTE_REFRESH => {
                self.status().counters.route_refreshes_in += 1;
                match wire::parse_route_refresh(f) {
                    Err(n) => return Err(self.notify(n).await),
                    Ok(Some(family)) => self.refresh(family, out).await?,
                    Ok(None) => {}
                }
            }
            kind::NOTIFICATION => return Err(self.received_notification(f)),
            _ => return Err(self.unexpected(f, 5, 3, "Established").await),
        }
        Ok(())
    }

    /// The attributes of each family we can send to this peer; a family
    /// without a next hop is left out, with a warning in the status.
    fn attributes(&self, families: &[Family], four: bool, local: IpAddr) -> Out {
        let sp = &self.ctx.speaker;
        let p = &self.ctx.peer;
        let communities = p
            .communities
            .clone()
            .unwrap_or_else(|| sp.communities.clone());
        let mut warnings = Vec::new();
        let mut attrs = Vec::new();
        let mut mp_v4 = false;
        for &f in families {
            let nh: Option<IpAddr> = match f {
                Family::Ipv4 => p
                    .next_hop_v4
                    .or(sp.next_hop_v4)
                    .map(IpAddr::V4)
                    .or(local.is_ipv4().then_some(local)),
                Family::Ipv6 => p
                    .next_hop_v6
                    .or(sp.next_hop_v6)
                    .map(IpAddr::V6)
                    .or(match local {
                        IpAddr::V6(v6) if !v6.is_unicast_link_local() => Some(local),
                        _ => None,
                    }),
            };
            let Some(next_hop) = nh else {
                warnings.push(format!(
                    "{f} routes are not sent: no {f} next hop (set next_hop_{} for the peer or the node)",
                    if f == Family::Ipv4 { "v4" } else { "v6" }
                ));
                continue;
            };
            if f == Family::Ipv4 && next_hop.is_ipv6() {
                mp_v4 = true;
            }
            attrs.push((
                f,
                Attributes {
                    local_as: sp.local_as,
                    four_octet_as: four,
                    next_hop,
                    communities: communities.clone(),
                },
            ));
        }
        self.status().warnings = warnings;
        Out { attrs, mp_v4 }
    }

    /// Brings the peer to the current export set; `first` sends End-of-RIB
    /// after the table when graceful restart was agreed.
    async fn sync(&mut self, out: &Out, first: bool, graceful: bool) -> Result<(), String> {
        let want: Arc<BTreeSet<IpNet>> = match self.ctx.exports.borrow_and_update().clone() {
            Some(w) => w,
            None => return Ok(()),
        };
        for (family, a) in &out.attrs {
            // The difference, read under the status lock (no copy of what
            // the peer has: that set is as large as the export set).
            let (gone, new) = {
                let st = self.status();
                let have = &st.advertised;
                let gone: Vec<IpNet> = have
                    .iter()
                    .filter(|p| Family::of(p) == *family && !want.contains(p))
                    .copied()
                    .collect();
                let new: Vec<IpNet> = want
                    .iter()
                    .filter(|p| Family::of(p) == *family && !have.contains(p))
                    .copied()
                    .collect();
                (gone, new)
            };
            let mp_v4 = out.mp_v4 && *family == Family::Ipv4;
            for m in wire::withdraw(*family, &gone, mp_v4) {
                self.send(&m).await?;
                self.status().counters.updates_out += 1;
            }
            {
                let mut st = self.status();
                st.counters.prefixes_withdrawn += gone.len() as u64;
                for p in &gone {
                    st.advertised.remove(p);
                }
            }
            for m in wire::announce(*family, &new, a) {
                self.send(&m).await?;
                self.status().counters.updates_out += 1;
            }
            {
                let mut st = self.status();
                st.counters.prefixes_announced += new.len() as u64;
                st.advertised.extend(new.iter().copied());
            }
        }
        if first && graceful {
            for (family, _) in &out.attrs {
                self.send(&wire::end_of_rib(*family)).await?;
                self.status().counters.updates_out += 1;
            }
        }
        Ok(())
    }

    /// Answers a ROUTE-REFRESH: everything of `family` the peer has, again.
    async fn refresh(&mut self, family: Family, out: &Out) -> Result<(), String> {
        let Some((_, a)) = out.attrs.iter().find(|(f, _)| *f == family) else {
            return Ok(());
        };
        let all: Vec<IpNet> = self
            .status()
            .advertised
            .iter()
            .filter(|p| Family::of(p) == family)
            .copied()
            .collect();
        for m in wire::announce(family, &all, a) {
            self.send(&m).await?;
            self.status().counters.updates_out += 1;
        }
        self.status().counters.prefixes_announced += all.len() as u64;
        Ok(())
    }
}

enum Next {
    Frame(Frame),
    Expired,
    Stopped(Stop),
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
