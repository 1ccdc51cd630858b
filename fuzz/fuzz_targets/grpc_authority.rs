//! The first code a unix-socket gRPC client's bytes meet: trellisd's and the
//! controller's `:authority` rewriting (`trellis_grpc::authority`) — HTTP/2
//! framing, header blocks collected over CONTINUATIONs, its own HPACK and
//! Huffman decoder — before h2 reads them.
//!
//! Besides never panicking: the connection wrapper (`NormalizeAuthority`),
//! reading the stream as a socket delivers it, in pieces of any size, must
//! hand h2 exactly what one `Rewriter::push` of the whole stream makes, and
//! fail where it fails.
//!
//! Input: the first byte sets the size of the pieces (1 to 256 bytes); the
//! rest follows the client preface, which the target writes itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};
use trellis_grpc::authority::{MAX_FRAME_SIZE, NormalizeAuthority, Rewriter};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A socket that delivers `data` in pieces of `piece` bytes, then EOF.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, frames)) = data.split_first() else {
        return;
    };
    let stream = [PREFACE, frames].concat();

    // All at once.
    let mut whole = Vec::new();
    let pushed = Rewriter::default().push(&stream, &mut whole);
    if let Ok(used) = pushed {
        // What is left is one unfinished frame (header, or a header-block
        // frame of at most MAX_FRAME_SIZE): the wrapper's buffer, twice
        // that, always has room for the rest of it.
        let left = stream.len() - used;
        assert!(left < 9 + MAX_FRAME_SIZE, "{left} bytes left unconsumed");
    }

    // As a socket delivers it.
    let mut conn = NormalizeAuthority::new(Pieces {
        data: &stream,
        piece: usize::from(piece) + 1,
    });
    let mut cx = Context::from_waker(Waker::noop());
    let mut read = Vec::new();
    let mut chunk = [0u8; 4096];
    let failed = loop {
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut conn).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break false,
            Poll::Ready(Ok(())) => read.extend_from_slice(buf.filled()),
            Poll::Ready(Err(_)) => break true,
            Poll::Pending => unreachable!("the pieces are always ready"),
        }
    };
    assert_eq!(
        failed,
        pushed.is_err(),
        "read in pieces of {}",
        usize::from(piece) + 1
    );
    assert!(
        read == whole,
        "read in pieces of {}: other bytes",
        usize::from(piece) + 1
    );
});
