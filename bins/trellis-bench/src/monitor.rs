//! A route monitor in a namespace, for the benchmarks that time a route's
//! arrival in a kernel: `cluster` (a block claimed for node A → trellisd's
//! peer route on node B, `proto 116`) and `bgp` (a block claimed → the route
//! BIRD learnt over BGP and wrote into the router namespace's kernel, `proto
//! bird`). Both watch the same way and differ only in whose routes they keep,
//! so one monitor serves both, given the route protocol number to keep.
//!
//! An rtnetlink socket, born on a thread that entered the namespace,
//! subscribed to IPv4 route notifications: every route of that protocol the
//! kernel adds there via a next hop (`<block> via <peer>`) is stamped with
//! the `Instant` the notification was read, so the time a route appeared is
//! known to within a wake-up (on the clock the bench times its requests
//! with), without polling `ip route` or the router.

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use nix::sys::socket::{setsockopt, sockopt::RcvBufForce, sockopt::ReceiveTimeout};
use nix::sys::time::{TimeVal, TimeValLike};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// BIRD's route protocol number (`RTPROT_BIRD` of `rtnetlink.h`): what its
/// kernel protocol tags the routes it writes with.
pub const RTPROT_BIRD: u8 = 12;

/// How long a read waits before the thread looks whether it should stop.
const TICK_MS: i64 = 50;

/// Routes of one protocol added in one namespace, as they are added.
pub struct RouteMonitor {
    /// The route protocol whose routes are kept.
    protocol: u8,
    added: mpsc::Receiver<(Instant, IpNet)>,
    /// First arrival of each route read so far.
    seen: HashMap<IpNet, Instant>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RouteMonitor {
    /// Starts monitoring `ns` for routes of route protocol `protocol`;
    /// returns once the socket is subscribed (so no route added after this
    /// returns is missed).
    pub fn start(ns: &Netns, protocol: u8) -> Result<Self> {
        let (tx, added) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = ns.enter_background(move || watch(protocol, &tx, &ready_tx, &flag));
        let mut m = RouteMonitor {
            protocol,
            added,
            seen: HashMap::new(),
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

    /// When the route to `block` was added, waiting for it at most `limit`.
    pub fn wait_for(&mut self, block: IpNet, limit: Duration) -> Result<Instant> {
        if self.wait(&[block], limit)?.is_empty() {
            return Ok(self.seen[&block]);
        }
        bail!("no route to {block} within {limit:?}")
    }

    /// When each of `want` was added, waiting at most `limit` in all.
    pub fn wait_all(
        &mut self,
        want: &[IpNet],
        limit: Duration,
    ) -> Result<BTreeMap<IpNet, Instant>> {
        let missing = self.wait(want, limit)?;
        if let Some(first) = missing.first() {
            bail!(
                "{} of {} routes not installed by {} within {limit:?}, first {first}",
                missing.len(),
                want.len(),
                installer(self.protocol)
            );
        }
        Ok(want.iter().map(|b| (*b, self.seen[b])).collect())
    }

    /// Reads arrivals until each of `want` has been seen or `limit` has
    /// passed; those still missing then.
    fn wait(&mut self, want: &[IpNet], limit: Duration) -> Result<Vec<IpNet>> {
        let deadline = Instant::now() + limit;
        loop {
            let missing: Vec<IpNet> = want
                .iter()
                .filter(|b| !self.seen.contains_key(b))
                .copied()
                .collect();
            if missing.is_empty() {
                return Ok(missing);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.added.recv_timeout(left) {
                Ok((at, b)) => {
                    self.seen.entry(b).or_insert(at);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(missing),
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

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// Who installs the routes of `protocol`, for messages.
fn installer(protocol: u8) -> String {
    match protocol {
        RTPROT_BIRD => "BIRD".into(),
        trellis_route::RTPROT_TRELLIS => "trellis".into(),
        p => format!("proto {p}"),
    }
}

/// The monitor thread: subscribes, says so on `ready`, then sends every
/// route of `protocol` added until `stop` (or until nobody listens).
fn watch(
    protocol: u8,
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
        for block in added_routes(&buf, protocol) {
            if tx.send((at, block)).is_err() {
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
    // A burst of route changes must not overflow the queue (ENOBUFS: a
    // lost notification). Root may go past rmem_max; best effort.
    if setsockopt(&sock, RcvBufForce, &(4 << 20)).is_err() {
        let _ = sock.set_rx_buf_sz(4 << 20);
    }
    setsockopt(&sock, ReceiveTimeout, &TimeVal::milliseconds(TICK_MS)).map_err(io::Error::from)?;
    Ok(sock)
}

/// The destinations of the routes of `protocol` added (`RTM_NEWROUTE`) via
/// a next hop in one datagram of route notifications; other messages are
/// skipped.
pub fn added_routes(mut buf: &[u8], protocol: u8) -> Vec<IpNet> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len])
            && let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) = m.payload
            && let Some(p) = destination(&r, protocol)
        {
            out.push(p);
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

/// Where `r` leads, if it is a route of `protocol` via a gateway.
fn destination(r: &RouteMessage, protocol: u8) -> Option<IpNet> {
    let via = r
        .attributes
        .iter()
        .any(|a| matches!(a, RouteAttribute::Gateway(_)));
    if u8::from(r.header.protocol) != protocol || !via {
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
    use netlink_packet_route::route::{RouteHeader, RouteProtocol, RouteScope, RouteType};
    use std::net::Ipv4Addr;
    use trellis_route::RTPROT_TRELLIS;

    /// A route notification: `dst/len` of `protocol`, via `via` if any; a
    /// delete if `delete`.
    fn route(protocol: u8, dst: [u8; 4], len: u8, via: Option<[u8; 4]>, delete: bool) -> Vec<u8> {
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
        if let Some(v) = via {
            r.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::from(
                    v,
                ))));
        }
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

    fn found(datagram: &[u8], protocol: u8) -> Vec<String> {
        added_routes(datagram, protocol)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn keeps_the_added_routes_of_one_protocol_in_a_datagram_of_several_messages() {
        let peer = Some([10, 1, 253, 101]);
        let mut datagram = route(RTPROT_TRELLIS, [10, 250, 0, 8], 29, peer, false);
        // The kernel's; a trellis route without a gateway; a delete.
        datagram.extend(route(2, [10, 9, 0, 0], 16, peer, false));
        datagram.extend(route(RTPROT_TRELLIS, [10, 244, 0, 5], 32, None, false));
        datagram.extend(route(RTPROT_TRELLIS, [10, 250, 0, 0], 29, peer, true));
        datagram.extend(route(RTPROT_BIRD, [10, 244, 0, 0], 26, peer, false));
        datagram.extend(route(RTPROT_TRELLIS, [10, 250, 0, 16], 29, peer, false));
        assert_eq!(
            found(&datagram, RTPROT_TRELLIS),
            ["10.250.0.8/29", "10.250.0.16/29"]
        );
        assert_eq!(found(&datagram, RTPROT_BIRD), ["10.244.0.0/26"]);
        assert!(
            found(&datagram[..20], RTPROT_TRELLIS).is_empty(),
            "truncated"
        );
        assert!(found(&[], RTPROT_BIRD).is_empty());
    }

    #[test]
    fn messages_name_who_installs_the_routes() {
        assert_eq!(installer(RTPROT_BIRD), "BIRD");
        assert_eq!(installer(RTPROT_TRELLIS), "trellis");
        assert_eq!(installer(9), "proto 9");
    }
}
