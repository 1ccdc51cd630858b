//! The netlink socket: one `NETLINK_NETFILTER` socket, opened once by the
//! nf_tables thread (in the namespace that thread was born in) and used,
//! only on that thread, for batches and for reads ([`crate::worker`] says
//! why: the reads block).
//!
//! nfnetlink handles a batch synchronously inside `send()`: by the time it
//! returns, the kernel has committed or aborted the batch and queued every
//! reply. So after sending a batch we read replies without blocking until the
//! socket is empty.

use crate::wire::{self, Message, NLMSG_HDRLEN, nlm};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout, sockopt::SndBufForce};
use nix::sys::time::{TimeVal, TimeValLike};
use std::io;

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The socket itself failed (or the kernel did not answer).
    Io(io::Error),
    /// The kernel refused a message.
    Kernel {
        /// Index of the failing message in the batch, when known.
        index: Option<usize>,
        /// The positive errno.
        errno: i32,
        /// The extended-ack message, if the kernel gave one.
        detail: Option<String>,
    },
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// One parsed netlink message of a reply.
pub(crate) struct Reply<'a> {
    pub(crate) ty: u16,
    flags: u16,
    seq: u32,
    pub(crate) payload: &'a [u8],
}

pub(crate) fn replies(buf: &[u8]) -> impl Iterator<Item = Reply<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let r = Reply {
            ty: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes(rest[8..12].try_into().ok()?),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        rest = &rest[wire::align(len).min(rest.len())..];
        Some(r)
    })
}

/// Decodes an `NLMSG_ERROR` payload: errno (0 = ACK) and the extended ack text.
pub(crate) fn decode_error(r: &Reply<'_>) -> (i32, Option<String>) {
    let p = r.payload;
    // Saturating: `-i32::MIN` overflows (a panic with overflow checks); no
    // kernel sends it, a malformed reply can (found by fuzz/'s nftables_reply).
    let errno = p.get(0..4).map_or(0, |b| {
        i32::from_ne_bytes(b.try_into().unwrap_or([0; 4])).saturating_neg()
    });
    if r.flags & nlm::F_ACK_TLVS == 0 {
        return (errno, None);
    }
    let orig_len = if r.flags & nlm::F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        p.get(4..8).map_or(0, |b| {
            u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])) as usize
        })
    };
    let tlvs = p.get(4 + wire::align(orig_len)..).unwrap_or(&[]);
    let detail = crate::parse::attrs(tlvs)
        .find(|(k, _)| *k == nlm::ERR_ATTR_MSG)
        .map(|(_, v)| String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v)).into_owned());
    (errno, detail)
}

/// An open nfnetlink socket and its sequence counter.
pub(crate) struct Conn {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Conn {
    /// Opens a socket in the calling thread's network namespace (a socket
    /// belongs to the namespace it was created in).
    pub(crate) fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Best effort: error texts make kernel refusals explainable.
        let _ = sock.set_ext_ack(true);
        // A batch is one datagram, and netlink refuses a datagram larger than
        // the send buffer (EMSGSIZE): raise it for large `sync`s (root only,
        // best effort; the default still holds ~2,500 published ports).
        let _ = setsockopt(&sock, SndBufForce, &(8 << 20));
        // Reads of dumps block; never forever.
        setsockopt(&sock, ReceiveTimeout, &TimeVal::seconds(5)).map_err(io::Error::from)?;
        Ok(Self {
            sock,
            seq: 1,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    fn next_seq(&mut self, n: usize) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n as u32 + 2);
        s
    }

    /// Discards replies left over from an earlier, interrupted exchange.
    /// Every exchange starts here, so this is where debug builds (every
    /// test) check that socket I/O happens on the nf_tables thread and never
    /// on a caller's, such as a tokio worker.
    fn drain(&mut self) {
        debug_assert_eq!(
            std::thread::current().name(),
            Some(crate::worker::THREAD),
            "nf_tables socket I/O off the nf_tables thread"
        );
        loop {
            self.buf.clear();
            if self
                .sock
                .recv(&mut self.buf, nix::libc::MSG_DONTWAIT)
                .is_err()
            {
                return;
            }
        }
    }

    /// Sends `msgs` as one atomic batch and reports the first refusal, if any.
    pub(crate) fn batch(&mut self, msgs: &[Message]) -> Result<(), Failure> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.drain();
        let base = self.next_seq(msgs.len());
        let last = base.wrapping_add(msgs.len() as u32);
        self.sock.send(&wire::encode_batch(msgs, base), 0)?;
        let (mut acked, mut failure) = (false, None);
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, nix::libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
            for r in replies(&self.buf).filter(|r| r.ty == nlm::MSG_ERROR) {
                let (errno, detail) = decode_error(&r);
                let index = r.seq.wrapping_sub(base).checked_sub(1).map(|i| i as usize);
                if errno != 0 && failure.is_none() {
                    failure = Some(Failure::Kernel {
                        index,
                        errno,
                        detail,
                    });
                } else if errno == 0 && r.seq == last {
                    acked = true;
                }
            }
        }
        match failure {
            Some(f) => Err(f),
            None if acked => Ok(()),
            None => Err(io::Error::other("nf_tables batch was not acknowledged").into()),
        }
    }

    /// Sends one GET (or, with `NLM_F_DUMP` in its flags, a dump) and returns the
    /// payloads (after `nfgenmsg`) of the data messages of the answer.
    pub(crate) fn request(&mut self, msg: &Message) -> Result<Vec<Vec<u8>>, Failure> {
        let full = self.request_full(msg)?;
        Ok(full.into_iter().map(|(_, payload)| payload).collect())
    }

    /// [`Conn::request`], each payload with the family of its `nfgenmsg` (a
    /// dump of every family answers objects of several).
    pub(crate) fn request_full(&mut self, msg: &Message) -> Result<Vec<(u8, Vec<u8>)>, Failure> {
        self.drain();
        let seq = self.next_seq(0);
        let dump = msg.flags & nlm::F_DUMP == nlm::F_DUMP;
        self.sock.send(&wire::encode_one(msg, seq), 0)?;
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            self.sock.recv(&mut self.buf, 0)?;
            for r in replies(&self.buf).filter(|r| r.seq == seq) {
                match r.ty {
                    nlm::MSG_DONE => return Ok(out),
                    nlm::MSG_ERROR => {
                        let (errno, detail) = decode_error(&r);
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(Failure::Kernel {
                            index: None,
                            errno,
                            detail,
                        });
                    }
                    _ => {
                        let family = r.payload.first().copied().unwrap_or(0);
                        let payload = r.payload.get(wire::NFGENMSG_LEN..).unwrap_or(&[]);
                        out.push((family, payload.to_vec()));
                        if !dump {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `NLMSG_ERROR` reply holding `code`, without extended ack.
    fn error_reply(code: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&nlm::MSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&[0; 10]); // flags, sequence, port
        b.extend_from_slice(&code.to_ne_bytes());
        b.extend_from_slice(&[0; 16]); // the request's header
        b
    }

    #[test]
    fn an_error_reply_gives_its_errno_and_a_code_of_i32_min_does_not_panic() {
        let decode = |code| {
            let buf = error_reply(code);
            let r = replies(&buf).next().expect("one reply");
            decode_error(&r)
        };
        assert_eq!(decode(-17), (17, None), "EEXIST");
        assert_eq!(decode(0), (0, None), "an ACK");
        assert_eq!(decode(i32::MIN), (i32::MAX, None));
    }
}
