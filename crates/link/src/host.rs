//! Read-only facts about the host that requests are checked against before
//! anything changes: which network namespaces are never a container's, the
//! host's addresses, and the ports its processes listen on.
//!
//! Namespaces are compared by identity (the nsfs device and inode an open
//! namespace file reports), never by path: `/proc/self/ns/net`,
//! `/proc/<pid>/ns/net` and a bind mount under `/run/netns` all reach the same
//! namespace under different names.
//!
//! Listening sockets are read from `/proc/thread-self/net/{tcp,tcp6,udp,udp6}`
//! as seen from inside the host namespace (a thread that entered it sees that
//! namespace's tables; `/proc/net` would show the process's). The parsing is
//! a pure function over the text, tested without a kernel.

use ipnet::IpNet;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use trellis_types::Protocol;

/// The identity of a namespace: the nsfs device and inode of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    /// `st_dev` of the namespace file.
    pub dev: u64,
    /// `st_ino` of the namespace file (the `4026531840` of `net:[4026531840]`).
    pub ino: u64,
}

impl NetnsId {
    /// The identity of the namespace behind an open namespace file.
    pub fn of(fd: &OwnedFd) -> io::Result<Self> {
        let meta = File::from(fd.try_clone()?).metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The identity of the namespace at `path`, if it can be read.
    pub fn at(path: &str) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl fmt::Display for NetnsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

/// A network namespace that must never be handed to trellis as a container's,
/// and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedNetns {
    /// Its identity.
    pub id: NetnsId,
    /// What it is, lowercase (`"the host network namespace trellis plumbs"`).
    pub what: &'static str,
}

/// The namespaces that are never a container's: the host trellis plumbs, the
/// namespace this process runs in, and init's (pid 1), which is the
/// machine's own whenever trellis runs in a namespace of its own. `host` is
/// `None` when the host is the process's namespace. Ones that cannot be read
/// (`/proc/1` without the privilege) are left out.
pub fn reserved_netns(host: Option<&OwnedFd>) -> Vec<ReservedNetns> {
    let candidates = [
        (
            host.map_or_else(|| NetnsId::at("/proc/self/ns/net"), NetnsId::of),
            "the host network namespace that trellis plumbs",
        ),
        (
            NetnsId::at("/proc/self/ns/net"),
            "the network namespace trellis itself runs in",
        ),
        (
            NetnsId::at("/proc/1/ns/net"),
            "the network namespace of init (pid 1)",
        ),
    ];
    let mut out: Vec<ReservedNetns> = Vec::new();
    for (id, what) in candidates {
        match id {
            Ok(id) if !out.iter().any(|r| r.id == id) => out.push(ReservedNetns { id, what }),
            Ok(_) => {}
            Err(e) => tracing::debug!(what, error = %e, "namespace identity not readable"),
        }
    }
    out
}

/// An address of the host, on the interface that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    /// The interface (`eth0`).
    pub dev: String,
    /// The address with its prefix length (`10.1.253.101/24`).
    pub addr: IpNet,
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.addr, self.dev)
    }
}

/// A socket on the host that owns a port: a TCP listener or a bound,
/// unconnected UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The address and port it is bound to (`0.0.0.0:22`).
    pub local: SocketAddr,
}

/// The `/proc/thread-self/net` tables to read, with their protocol.
pub(crate) const PROC_TABLES: [(&str, Protocol); 4] = [
    ("tcp", Protocol::Tcp),
    ("tcp6", Protocol::Tcp),
    ("udp", Protocol::Udp),
    ("udp6", Protocol::Udp),
];

/// `TCP_LISTEN`, and `TCP_CLOSE`, the state of a bound unconnected UDP socket.
const LISTEN: &str = "0A";
const UDP_UNCONNECTED: &str = "07";

/// The owners of ports in one `/proc/net/{tcp,tcp6,udp,udp6}` table: TCP
/// listeners, and UDP sockets bound but not connected (a connected one only
/// takes answers from its peer). Lines that do not parse are skipped.
pub fn parse_proc_net(text: &str, protocol: Protocol) -> Vec<Listener> {
    let state = match protocol {
        Protocol::Tcp => LISTEN,
        Protocol::Udp => UDP_UNCONNECTED,
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace().skip(1);
            let local = cols.next()?;
            let st = cols.nth(1)?;
            (st == state).then_some(())?;
            Some(Listener {
                protocol,
                local: parse_hex_addr(local)?,
            })
        })
        .collect()
}

/// `0100007F:0016` → `127.0.0.1:22`. The kernel prints each 32-bit word of
/// the address as a native integer (`%08X` of a big-endian value loaded as
/// is), so the word's native bytes are the address bytes in network order;
/// the port is printed in host order.
fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex4(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    #[test]
    fn tcp_listeners_only() {
        let text = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue\n\
             \x20  0: {}:0016 00000000:0000 0A 00000000:00000000 00:00000000\n\
             \x20  1: {}:1F90 00000000:0000 0A 00000000:00000000 00:00000000\n\
             \x20  2: {}:A2C4 {}:0016 01 00000000:00000000 00:00000000\n",
            hex4(Ipv4Addr::UNSPECIFIED),
            hex4(Ipv4Addr::new(127, 0, 0, 1)),
            hex4(Ipv4Addr::new(10, 1, 253, 101)),
            hex4(Ipv4Addr::new(10, 1, 253, 1)),
        );
        let got = parse_proc_net(&text, Protocol::Tcp);
        let want: Vec<SocketAddr> = vec![
            "0.0.0.0:22".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        ];
        assert_eq!(got.iter().map(|l| l.local).collect::<Vec<_>>(), want);
        assert!(got.iter().all(|l| l.protocol == Protocol::Tcp));
    }

    #[test]
    fn udp_bound_unconnected_only_and_ipv6() {
        let v6 = Ipv6Addr::LOCALHOST
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes(c.try_into().unwrap())))
            .collect::<String>();
        let text = format!(
            "  sl  local_address rem_address st\n\
             \x20  0: {v6}:0035 00000000000000000000000000000000:0000 07 0\n\
             \x20  1: {v6}:0036 00000000000000000000000000000000:0000 01 0\n\
             garbage\n"
        );
        let got = parse_proc_net(&text, Protocol::Udp);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].local, "[::1]:53".parse().unwrap());
    }
}
