//! TCP MD5 signatures (RFC 2385): the kernel signs and checks every segment
//! to and from one peer address with a shared key, set with
//! `setsockopt(IPPROTO_TCP, TCP_MD5SIG)` on the connecting socket, or on the
//! listening one for peers that connect to us.
//!
//! No crate wraps this option (nix and socket2 do not; libc has the constant
//! but not the struct), so this module holds the crate's only `unsafe`: one
//! `setsockopt` call on a struct laid out as `linux/tcp.h`'s `tcp_md5sig`,
//! built from safe code. Everything else in the crate denies `unsafe`.
#![allow(unsafe_code)]

use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// `TCP_MD5SIG_MAXKEYLEN`.
pub const MAX_KEY: usize = 80;

/// `struct tcp_md5sig` of linux/tcp.h: a `__kernel_sockaddr_storage`
/// (128 bytes, 8-aligned), flags, prefix length, key length, ifindex, key.
#[repr(C, align(8))]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; MAX_KEY],
}

fn sig(peer: IpAddr, key: &[u8]) -> TcpMd5Sig {
    let mut addr = [0u8; 128];
    match peer {
        IpAddr::V4(v4) => {
            addr[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            addr[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            addr[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            addr[8..24].copy_from_slice(&v6.octets());
        }
    }
    let mut k = [0u8; MAX_KEY];
    k[..key.len()].copy_from_slice(key);
    TcpMd5Sig {
        addr,
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: k,
    }
}

/// Sets (a non-empty `key`) or removes (an empty one) the MD5 key for
/// `peer` on `socket`. A peer seen over an IPv6 socket as an IPv4-mapped
/// address must be given in that form.
pub fn set_key(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> std::io::Result<()> {
    if key.len() > MAX_KEY {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("an MD5 key of {} bytes (at most {MAX_KEY})", key.len()),
        ));
    }
    let s = sig(peer, key);
    // SAFETY: `s` is a live, fully initialised value laid out as the kernel's
    // `struct tcp_md5sig` (repr(C), same field order and sizes, 8-aligned
    // address storage), and the length passed is its size; the kernel only
    // reads it during the call. The fd is borrowed from a live socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            std::ptr::from_ref(&s).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_is_the_kernels_size() {
        // sizeof(struct tcp_md5sig) on Linux: 128 + 1 + 1 + 2 + 4 + 80.
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn a_key_is_accepted_by_the_kernel_and_a_long_one_refused() {
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_key(&sock, "127.0.0.1".parse().unwrap(), b"secret").unwrap();
        set_key(&sock, "127.0.0.1".parse().unwrap(), b"").unwrap();
        let long = [b'x'; MAX_KEY + 1];
        let e = set_key(&sock, "127.0.0.1".parse().unwrap(), &long).unwrap_err();
        assert!(e.to_string().contains("81 bytes"), "{e}");
    }
}
