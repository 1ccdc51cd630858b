//! Standard gRPC clients over the unix socket: `:authority` normalised
//! before h2 reads it.
//!
//! Design decision: gRPC C-core (Python's grpcio, grpc-java's and C++'s
//! channels, Ruby, PHP, …) sends the socket's path as `:authority` —
//! grpcio 1.85 sends `/run/trellis/trellisd.sock` as
//! `run%2Ftrellis%2Ftrellisd.sock` — and h2 refuses a percent sign outside
//! userinfo as a malformed request, so every such call ends in
//! `RST_STREAM(PROTOCOL_ERROR)`. Neither side will change (hyperium/h2#487,
//! grpc/grpc#38142), and tonic offers no hook before h2's check, so trellis
//! fixes the bytes: [`NormalizeAuthority`] sits between the accepted
//! [`UnixStream`] and hyper and rewrites every header block the client
//! sends (`frames`, `block`, over an HPACK decoder of its own: `hpack`,
//! `huffman`), replacing an `:authority` that h2 would refuse by
//! `localhost`. Everything else passes through untouched, and writes go
//! straight to the socket.
//!
//! Only unix-socket connections are wrapped: over TCP a client's authority
//! is its real target and valid, and TLS hides the frames anyway.

mod block;
mod frames;
mod hpack;
mod huffman;
#[cfg(test)]
mod tests;

pub use block::{DEFAULT_TABLE_SIZE, LOCAL_AUTHORITY};
pub use frames::{FrameError, MAX_FRAME_SIZE, MAX_HEADER_BLOCK, Rewriter};

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// Raw bytes read and not yet consumed never exceed one frame header plus
/// one collected frame, so twice the frame size always leaves room to read.
const RAW_CAPACITY: usize = 2 * MAX_FRAME_SIZE;

/// A client connection whose header blocks reach the server with a valid
/// `:authority` (see the module docs). Reads are rewritten; writes are not.
pub struct NormalizeAuthority<IO> {
    io: IO,
    rewriter: Rewriter,
    /// Bytes read from `io`: `raw[start..end]` are not consumed yet.
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// Rewritten bytes: `out[pos..]` are not yet handed to the reader.
    out: Vec<u8>,
    pos: usize,
    eof: bool,
    failed: Option<String>,
}

impl<IO> NormalizeAuthority<IO> {
    /// Wraps a freshly accepted connection (nothing read from it yet).
    pub fn new(io: IO) -> Self {
        NormalizeAuthority {
            io,
            rewriter: Rewriter::default(),
            raw: vec![0; RAW_CAPACITY],
            start: 0,
            end: 0,
            out: Vec::with_capacity(RAW_CAPACITY),
            pos: 0,
            eof: false,
            failed: None,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Rewrites the raw bytes read so far; remembers a failure.
    fn rewrite(&mut self) {
        self.out.clear();
        self.pos = 0;
        match self
            .rewriter
            .push(&self.raw[self.start..self.end], &mut self.out)
        {
            Ok(used) => self.start += used,
            Err(e) => {
                tracing::warn!(error = %e, "closing a unix-socket connection");
                self.failed = Some(e.to_string());
            }
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 {
            // Only an unfinished frame header or header-block frame is left.
            self.raw.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for NormalizeAuthority<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.pos);
                buf.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())));
            }
            if this.eof || buf.remaining() == 0 {
                // At EOF, an unfinished frame is dropped: h2 sees the
                // connection end at a frame boundary.
                return Poll::Ready(Ok(()));
            }
            let mut raw = ReadBuf::new(&mut this.raw[this.end..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut raw))?;
            let n = raw.filled().len();
            this.eof = n == 0;
            this.end += n;
            this.rewrite();
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for NormalizeAuthority<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for NormalizeAuthority<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The connections of `listener`, each wrapped in [`NormalizeAuthority`]:
/// what to give tonic's `serve_with_incoming*` for a unix socket.
pub fn unix_incoming(
    listener: UnixListener,
) -> impl Stream<Item = io::Result<NormalizeAuthority<UnixStream>>> + Send + 'static {
    UnixListenerStream::new(listener).map(|conn| conn.map(NormalizeAuthority::new))
}
