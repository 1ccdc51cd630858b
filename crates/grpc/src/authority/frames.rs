//! The client-to-server byte stream of one HTTP/2 connection, frame by frame
//! (RFC 9113 §3.4, §4.1): the preface and every frame but HEADERS and
//! CONTINUATION pass through byte for byte; a header block (a HEADERS frame
//! and the CONTINUATION frames up to END_HEADERS, §6.2, §6.10) is collected,
//! re-encoded by [`BlockRewriter`] and written out as new frames.
//!
//! Sans I/O: [`Rewriter::push`] takes whatever bytes arrived and consumes
//! what it can, so the same code serves one byte at a time or 64 KiB reads,
//! and tests drive it with plain slices.

use super::block::BlockRewriter;
use super::hpack::HpackError;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// SETTINGS_MAX_FRAME_SIZE as the server leaves it (RFC 9113 §6.5.2; tonic
/// does not raise it): no client frame we must collect may be larger, and
/// no frame we write is.
pub const MAX_FRAME_SIZE: usize = 16_384;

/// The most header block bytes collected for one request (HEADERS plus
/// CONTINUATIONs). Far above what hyper accepts as a header list (16 KiB by
/// default), so only a runaway or hostile client reaches it.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

const HEAD_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;

/// Why a client's byte stream cannot be passed on: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection does not open with the client preface.
    #[error("the connection does not start with the HTTP/2 client preface")]
    BadPreface,
    /// A HEADERS or CONTINUATION frame above [`MAX_FRAME_SIZE`].
    #[error(
        "a frame of type {kind:#x} and {len} bytes exceeds the maximum frame size {MAX_FRAME_SIZE}"
    )]
    FrameTooLarge {
        /// Frame type.
        kind: u8,
        /// Payload length.
        len: usize,
    },
    /// A header block above [`MAX_HEADER_BLOCK`].
    #[error("the header block of stream {stream} exceeds {MAX_HEADER_BLOCK} bytes")]
    BlockTooLarge {
        /// Stream id.
        stream: u32,
    },
    /// Padding or priority fields longer than the HEADERS payload.
    #[error("HEADERS frame of stream {stream}: padding and priority exceed its {len}-byte payload")]
    BadPadding {
        /// Stream id.
        stream: u32,
        /// Payload length.
        len: usize,
    },
    /// Another frame between HEADERS and END_HEADERS (RFC 9113 §6.10).
    #[error(
        "expected a CONTINUATION of stream {stream}, got a frame of type {kind:#x} on stream {got}"
    )]
    ExpectedContinuation {
        /// The stream whose header block is open.
        stream: u32,
        /// Type of the frame that came.
        kind: u8,
        /// Its stream.
        got: u32,
    },
    /// CONTINUATION with no header block open.
    #[error("CONTINUATION frame on stream {stream} without a HEADERS frame before it")]
    StrayContinuation {
        /// Stream id.
        stream: u32,
    },
    /// The header block does not decode (RFC 7541 §2.3, §4.2, §5, §6).
    #[error("the header block of stream {stream} is malformed: {source}")]
    Hpack {
        /// Stream id.
        stream: u32,
        /// The decoder's reason.
        #[source]
        source: HpackError,
    },
}

/// A frame header (RFC 9113 §4.1).
#[derive(Clone, Copy)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Head {
    fn parse(b: &[u8]) -> Head {
        Head {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved high bit is passed on as it came.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.len).expect("frames we write are at most MAX_FRAME_SIZE");
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

/// A header block being collected: its HEADERS frame's flags and priority,
/// and the fragments so far.
struct Open {
    stream: u32,
    flags: u8,
    priority: Option<[u8; PRIORITY_LEN]>,
    block: Vec<u8>,
}

enum State {
    /// Within the preface: how many of its bytes have passed.
    Preface(usize),
    /// At a frame boundary.
    Head,
    /// Inside the payload of a frame passed through: bytes still to pass.
    Payload(usize),
    /// Between a HEADERS frame without END_HEADERS and its last CONTINUATION.
    Block(Open),
}

/// Rewrites the header blocks of one client-to-server byte stream.
pub struct Rewriter {
    state: State,
    hpack: BlockRewriter,
    encoded: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::Preface(0),
            hpack: BlockRewriter::default(),
            encoded: Vec::new(),
        }
    }
}

impl Rewriter {
    /// Consumes what it can of `input`, appending what the server should
    /// read to `out`, and returns how many bytes it consumed. The rest (an
    /// incomplete frame header or header-block frame) must be offered again,
    /// with more bytes after it. After an error, the connection is unusable.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, FrameError> {
        let mut used = 0;
        while let Some(n) = self.step(&input[used..], out)? {
            used += n;
        }
        Ok(used)
    }

    /// One unit of progress: `None` when `rest` is too short for any.
    fn step(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, FrameError> {
        match &mut self.state {
            State::Preface(seen) => {
                let n = rest.len().min(PREFACE.len() - *seen);
                if n == 0 {
                    return Ok(None);
                }
                if rest[..n] != PREFACE[*seen..*seen + n] {
                    return Err(FrameError::BadPreface);
                }
                out.extend_from_slice(&rest[..n]);
                *seen += n;
                if *seen == PREFACE.len() {
                    self.state = State::Head;
                }
                Ok(Some(n))
            }
            State::Payload(left) => {
                let n = rest.len().min(*left);
                if n == 0 {
                    return Ok(None);
                }
                out.extend_from_slice(&rest[..n]);
                *left -= n;
                if *left == 0 {
                    self.state = State::Head;
                }
                Ok(Some(n))
            }
            State::Head | State::Block(_) => self.frame(rest, out),
        }
    }

    /// At a frame boundary: a frame header, and for header-block frames the
    /// whole frame.
    fn frame(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, FrameError> {
        if rest.len() < HEAD_LEN {
            return Ok(None);
        }
        let head = Head::parse(rest);
        let in_block = matches!(self.state, State::Block(_));
        if !in_block && head.kind != HEADERS {
            if head.kind == CONTINUATION {
                return Err(FrameError::StrayContinuation {
                    stream: head.stream,
                });
            }
            out.extend_from_slice(&rest[..HEAD_LEN]);
            if head.len > 0 {
                self.state = State::Payload(head.len);
            }
            return Ok(Some(HEAD_LEN));
        }
        if head.len > MAX_FRAME_SIZE {
            let (kind, len) = (head.kind, head.len);
            return Err(FrameError::FrameTooLarge { kind, len });
        }
        let Some(payload) = rest.get(HEAD_LEN..HEAD_LEN + head.len) else {
            return Ok(None);
        };
        let mut open = match std::mem::replace(&mut self.state, State::Head) {
            State::Block(open) => continuation(open, head, payload)?,
            _ => headers(head, payload)?,
        };
        if head.flags & END_HEADERS == 0 {
            self.state = State::Block(open);
        } else {
            self.finish(&mut open, out)?;
        }
        Ok(Some(HEAD_LEN + head.len))
    }

    /// Re-encodes a complete header block and writes it as HEADERS (plus
    /// CONTINUATIONs when it outgrows one frame).
    fn finish(&mut self, open: &mut Open, out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.encoded.clear();
        let stream = open.stream;
        self.hpack
            .rewrite(&open.block, &mut self.encoded)
            .map_err(|source| FrameError::Hpack { stream, source })?;
        write_block(open, &self.encoded, out);
        Ok(())
    }
}

/// Opens a header block from a HEADERS frame: padding removed, priority kept
/// (RFC 9113 §6.2).
fn headers(head: Head, payload: &[u8]) -> Result<Open, FrameError> {
    let bad = || FrameError::BadPadding {
        stream: head.stream,
        len: head.len,
    };
    let mut body = payload;
    let mut pad = 0;
    if head.flags & PADDED != 0 {
        let (&n, after) = body.split_first().ok_or_else(bad)?;
        pad = usize::from(n);
        body = after;
    }
    let mut priority = None;
    if head.flags & PRIORITY != 0 {
        let (p, after) = body.split_first_chunk::<PRIORITY_LEN>().ok_or_else(bad)?;
        priority = Some(*p);
        body = after;
    }
    let fragment = body.len().checked_sub(pad).ok_or_else(bad)?;
    Ok(Open {
        stream: head.stream,
        flags: head.flags,
        priority,
        block: body[..fragment].to_vec(),
    })
}

/// Adds a CONTINUATION frame's fragment to the open block (RFC 9113 §6.10).
fn continuation(mut open: Open, head: Head, payload: &[u8]) -> Result<Open, FrameError> {
    if head.kind != CONTINUATION || head.stream != open.stream {
        return Err(FrameError::ExpectedContinuation {
            stream: open.stream,
            kind: head.kind,
            got: head.stream,
        });
    }
    if open.block.len() + payload.len() > MAX_HEADER_BLOCK {
        return Err(FrameError::BlockTooLarge {
            stream: open.stream,
        });
    }
    open.block.extend_from_slice(payload);
    Ok(open)
}

/// Writes `block` as a HEADERS frame with `open`'s END_STREAM and priority,
/// then CONTINUATION frames, none above [`MAX_FRAME_SIZE`], END_HEADERS on
/// the last.
fn write_block(open: &Open, block: &[u8], out: &mut Vec<u8>) {
    let prio_len = open.priority.map_or(0, |p| p.len());
    let (first, mut rest) = block.split_at(block.len().min(MAX_FRAME_SIZE - prio_len));
    let flags = open.flags & (END_STREAM | PRIORITY) | end_headers(rest.is_empty());
    let stream = open.stream;
    let len = prio_len + first.len();
    Head {
        len,
        kind: HEADERS,
        flags,
        stream,
    }
    .write(out);
    if let Some(p) = open.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_SIZE));
        rest = after;
        let flags = end_headers(rest.is_empty());
        let (len, kind) = (chunk.len(), CONTINUATION);
        Head {
            len,
            kind,
            flags,
            stream,
        }
        .write(out);
        out.extend_from_slice(chunk);
    }
}

fn end_headers(last: bool) -> u8 {
    if last { END_HEADERS } else { 0 }
}
