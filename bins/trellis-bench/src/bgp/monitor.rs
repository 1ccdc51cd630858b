//! BIRD's table as the router namespace's kernel sees it: an rtnetlink
//! socket, born on a thread that entered the namespace, subscribed to IPv4
//! route notifications. BIRD's kernel protocol writes each route it learns
//! into the kernel as it enters BIRD's table (`proto bird`), so every such
//! `RTM_NEWROUTE` is stamped with the `Instant` the notification was read:
//! the time a route reached BIRD is known to within a wake-up (plus BIRD's
//! own netlink write), without polling BIRD.

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use nix::sys::socket::{setsockopt, sockopt::RcvBufForce, sockopt::ReceiveTimeout};
use nix::sys::time::{TimeVal, TimeValLike};
use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// How long a read waits before the thread looks whether it should stop.
const TICK_MS: i64 = 50;

/// Routes BIRD installs in one namespace, as they are installed.
pub struct BirdRoutes {
    added: mpsc::Receiver<(Instant, IpNet)>,
    /// First arrival of each route seen so far.
    seen: BTreeMap<IpNet, Instant>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl BirdRoutes {
    /// Starts watching `ns`; returns once subscribed (no route installed
    /// after this returns is missed).
    pub fn start(ns: &Netns) -> Result<Self> {
        let (tx, added) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = ns.enter_background(move || watch(&tx, &ready_tx, &flag));
        let mut m = BirdRoutes {
            added,
            seen: BTreeMap::new(),
            stop,
            thread: Some(thread),
        };
        match ready.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(m),
            Ok(Err(e)) => Err(e).context("open a route monitor socket"),
            Err(_) => Err(m
                .end()
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the route monitor did not start within 5 s"))),
        }
    }

    /// When each of `want` arrived, waiting at most `limit` in all.
    pub fn wait_all(
        &mut self,
        want: &[IpNet],
        limit: Duration,
    ) -> Result<BTreeMap<IpNet, Instant>> {
        let deadline = Instant::now() + limit;
        loop {
            let missing: Vec<&IpNet> = want.iter().filter(|b| !self.seen.contains_key(b)).collect();
            if missing.is_empty() {
                return Ok(want.iter().map(|b| (*b, self.seen[b])).collect());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.added.recv_timeout(left) {
                Ok((at, p)) => {
                    self.seen.entry(p).or_insert(at);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "{} of {} routes not installed by BIRD within {limit:?}, first {}",
                    missing.len(),
                    want.len(),
                    missing[0]
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let why = self.end().err();
                    bail!("the route monitor stopped: {why:?}")
                }
            }
        }
    }

    /// Stops the thread; what it failed with, if it did.
    fn end(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r.context("route monitor"),
            Some(Err(_)) => bail!("the route monitor thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for BirdRoutes {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// The monitor thread: subscribes, says so on `ready`, then sends every
/// route BIRD adds until `stop` (or until nobody listens).
fn watch(
    tx: &mpsc::Sender<(Instant, IpNet)>,
    ready: &mpsc::Sender<io::Result<()>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let sock = match subscribe() {
        Ok(s) => s,
        Err(e) => {
            let kind = e.kind();
            let _ = ready.send(Err(e));
            return Err(io::Error::new(kind, "subscribe"));
        }
    };
    let _ = ready.send(Ok(()));
    let mut buf = Vec::with_capacity(1 << 16);
    while !stop.load(Ordering::Relaxed) {
        buf.clear();
        match sock.recv(&mut buf, 0) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                return Err(io::Error::new(
                    e.kind(),
                    "route notifications were lost (ENOBUFS): the socket's queue overflowed",
                ));
            }
            Err(e) => return Err(e),
        }
        let at = Instant::now();
        for p in added_bird_routes(&buf) {
            if tx.send((at, p)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn subscribe() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.add_membership(nix::libc::RTNLGRP_IPV4_ROUTE)?;
    // A burst must not overflow the queue (ENOBUFS: a lost notification).
    // Root may go past rmem_max; best effort.
    if setsockopt(&sock, RcvBufForce, &(4 << 20)).is_err() {
        let _ = sock.set_rx_buf_sz(4 << 20);
    }
    setsockopt(&sock, ReceiveTimeout, &TimeVal::milliseconds(TICK_MS)).map_err(io::Error::from)?;
    Ok(sock)
}

/// The destinations of the routes BIRD added (`RTM_NEWROUTE`, `proto
/// bird`) in one datagram of route notifications; others are skipped.
pub fn added_bird_routes(mut buf: &[u8]) -> Vec<IpNet> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len])
            && let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) = m.payload
            && let Some(p) = bird_destination(&r)
        {
            out.push(p);
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

fn bird_destination(r: &RouteMessage) -> Option<IpNet> {
    if r.header.protocol != RouteProtocol::Bird {
        return None;
    }
    let addr = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })?;
    IpNet::new(addr, r.header.destination_prefix_length).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::route::{RouteHeader, RouteScope, RouteType};
    use std::net::Ipv4Addr;

    fn route(protocol: u8, dst: [u8; 4], len: u8, delete: bool) -> Vec<u8> {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = len;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.protocol = RouteProtocol::from(protocol);
        r.header.scope = RouteScope::Universe;
        r.header.kind = RouteType::Unicast;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::from(dst),
            )));
        let inner = if delete {
            RouteNetlinkMessage::DelRoute(r)
        } else {
            RouteNetlinkMessage::NewRoute(r)
        };
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        );
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    #[test]
    fn finds_birds_added_routes_in_a_datagram_of_several_messages() {
        // 12 is RTPROT_BIRD.
        let mut datagram = route(12, [10, 244, 0, 0], 26, false);
        datagram.extend(route(2, [10, 99, 0, 0], 24, false)); // the kernel's
        datagram.extend(route(12, [10, 244, 0, 64], 26, true)); // a delete
        datagram.extend(route(12, [10, 244, 0, 128], 26, false));
        let found: Vec<String> = added_bird_routes(&datagram)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["10.244.0.0/26", "10.244.0.128/26"]);
        assert!(added_bird_routes(&datagram[..20]).is_empty(), "truncated");
        assert!(added_bird_routes(&[]).is_empty());
    }
}
