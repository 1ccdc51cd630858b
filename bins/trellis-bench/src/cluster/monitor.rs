//! A route monitor in a namespace: an rtnetlink socket, born on a thread
//! that entered the namespace, subscribed to IPv4 route notifications. Every
//! trellis peer route the kernel adds there (`proto 116`, a block via a
//! peer's underlay address) is stamped with the moment the notification was
//! read, so the time a route appeared is known to within a wake-up, without
//! polling `ip route`.

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use nix::sys::socket::{setsockopt, sockopt::RcvBufForce, sockopt::ReceiveTimeout};
use nix::sys::time::{TimeVal, TimeValLike};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use trellis_testlab::Netns;

/// How long a read waits before the thread looks whether it should stop.
const TICK_MS: i64 = 50;

/// Peer routes added in one namespace, as they are added.
pub struct RouteMonitor {
    added: mpsc::Receiver<(Instant, IpNet)>,
    /// Seen but not yet asked for.
    early: HashMap<IpNet, Instant>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RouteMonitor {
    /// Starts monitoring `ns`; returns once the socket is subscribed (so no
    /// route added after this returns is missed).
    pub fn start(ns: &Netns) -> Result<Self> {
        let (tx, added) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = ns.enter_background(move || watch(&tx, &ready_tx, &flag));
        let mut m = RouteMonitor {
            added,
            early: HashMap::new(),
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
        if let Some(at) = self.early.remove(&block) {
            return Ok(at);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.added.recv_timeout(left) {
                Ok((at, b)) if b == block => return Ok(at),
                Ok((at, b)) => {
                    self.early.entry(b).or_insert(at);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("no route to {block} within {limit:?}")
                }
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

/// The monitor thread: subscribes, says so on `ready`, then sends every
/// peer route added until `stop` (or until nobody listens).
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
        for block in added_peer_routes(&buf) {
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

/// The blocks of the trellis peer routes added (`RTM_NEWROUTE`) in one
/// datagram of route notifications; other messages are skipped.
pub fn added_peer_routes(mut buf: &[u8]) -> Vec<IpNet> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len])
            && let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) = m.payload
            && let Some(p) = trellis_route::peer::parse_peer_route(&r)
        {
            out.push(p.block);
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    };
    use std::net::Ipv4Addr;

    fn route(protocol: u8, dst: [u8; 4], len: u8, via: Option<[u8; 4]>) -> Vec<u8> {
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
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)),
        );
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    #[test]
    fn finds_trellis_peer_routes_in_a_datagram_of_several_messages() {
        let mut datagram = route(116, [10, 250, 0, 8], 29, Some([10, 1, 253, 101]));
        // Not trellis's: a kernel route, and a trellis route without a gateway.
        datagram.extend(route(2, [10, 9, 0, 0], 16, Some([10, 1, 253, 1])));
        datagram.extend(route(116, [10, 244, 0, 5], 32, None));
        datagram.extend(route(116, [10, 250, 0, 16], 29, Some([10, 1, 253, 101])));
        let blocks: Vec<String> = added_peer_routes(&datagram)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(blocks, ["10.250.0.8/29", "10.250.0.16/29"]);
        assert!(added_peer_routes(&datagram[..20]).is_empty(), "truncated");
        assert!(added_peer_routes(&[]).is_empty());
    }
}
