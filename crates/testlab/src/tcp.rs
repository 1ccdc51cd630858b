//! Tiny TCP peers that run inside a namespace and report what they saw.
//!
//! The server answers every connection with the peer address it observed
//! (`"10.1.253.101:40312\n"`): that is how tests prove SNAT/DNAT by what the far
//! side sees rather than by reading rules.

use crate::Netns;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A TCP server inside a namespace; stops when dropped.
pub struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Listens on `addr` inside `ns` and answers each connection with
    /// `"<tag> <peer-address>\n"`.
    pub fn start(ns: &Netns, addr: SocketAddr, tag: &str) -> Self {
        // An IPv6 address is not bindable until its duplicate address
        // detection ends (a second or two after it is added): wait for it.
        let mut tries = 0;
        let listener = loop {
            match ns.enter(move || TcpListener::bind(addr)) {
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => break other,
            }
        };
        let listener = listener.unwrap_or_else(|e| panic!("bind {addr} in {}: {e}", ns.name()));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, tag) = (stop.clone(), tag.to_owned());
        // The listening socket belongs to the namespace it was bound in, so the
        // accept loop itself can run on any thread.
        let thread = std::thread::spawn(move || serve(listener, &stop2, &tag));
        TcpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool, tag: &str) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut s, peer)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(format!("{tag} {peer}\n").as_bytes());
                let _ = s.shutdown(Shutdown::Write);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `ns` to `addr` (2 s timeout) and returns what the server
/// said, trimmed. Errors are returned, not panicked, so tests can assert failure.
pub fn tcp_request(ns: &Netns, addr: SocketAddr) -> std::io::Result<String> {
    ns.enter(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.trim().to_owned())
    })
}

/// The peer address a [`TcpServer`] reported (`"<tag> <ip>:<port>"` → ip).
pub fn seen_ip(reply: &str) -> std::net::IpAddr {
    let peer = reply.rsplit(' ').next().unwrap_or_default();
    peer.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("reply {reply:?} has no peer address: {e}"))
        .ip()
}

/// Successes and failures of one stream of requests ([`tcp_traffic`]).
#[derive(Debug, Default)]
pub struct Counts {
    /// Requests answered.
    pub ok: std::sync::atomic::AtomicU64,
    /// Requests that failed.
    pub failed: std::sync::atomic::AtomicU64,
}

impl Counts {
    /// `(ok, failed)` so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// Requests `to` from `from` in a loop (every 5 ms) until `stop`, counting
/// answers and failures: how restart tests prove traffic never stopped.
pub fn tcp_traffic(from: &Netns, to: SocketAddr, stop: &AtomicBool, counts: &Counts) {
    while !stop.load(Ordering::SeqCst) {
        match tcp_request(from, to) {
            Ok(_) => counts.ok.fetch_add(1, Ordering::SeqCst),
            Err(e) => {
                eprintln!("request to {to} failed: {e}");
                counts.failed.fetch_add(1, Ordering::SeqCst)
            }
        };
        std::thread::sleep(Duration::from_millis(5));
    }
}
