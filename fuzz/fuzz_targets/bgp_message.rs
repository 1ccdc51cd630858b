//! What a BGP peer sends, as trellis's speaker reads it (`trellis_bgp::wire`):
//! frames cut from the byte stream by `read_frame` (the header checked:
//! marker, length, type), the first one taken as the peer's OPEN
//! (`parse_open`: version, hold time, then netgauze's parser, AS, identifier,
//! capabilities), every later one as an Established session takes it:
//! UPDATEs walked and classified by RFC 7606 (`check_update`), ROUTE-REFRESH
//! and NOTIFICATION read. Every NOTIFICATION the speaker would answer with
//! is encoded, and must fit in a BGP message (4096 bytes).
//!
//! Input: the first byte's bit 0 is whether the session uses 4-byte AS
//! numbers when the OPEN does not say (it failed); the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use trellis_bgp::wire::{self, Frame, MAX_MESSAGE, Notify, ReadError, Verdict, kind};

/// The session's settings: the peer is configured as AS 65001, we are
/// AS 65000 with identifier 10.0.0.1.
const PEER_AS: u32 = 65001;
const LOCAL_AS: u32 = 65000;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// What the session does with a NOTIFICATION it sends: encodes it, and logs it.
fn send(n: &Notify) {
    let bytes = n.encode();
    assert!(
        bytes.len() <= MAX_MESSAGE,
        "a NOTIFICATION of {} bytes: {n}",
        bytes.len()
    );
    let _ = n.to_string();
}

/// The next frame of `stream`: the reader never waits on a slice.
fn next(stream: &mut &[u8]) -> Result<Frame, ReadError> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(wire::read_frame(stream)).poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => unreachable!("a slice is always ready"),
    }
}

fn open(frame: &Frame) -> Option<bool> {
    match wire::parse_open(frame, PEER_AS, LOCAL_AS, ROUTER_ID) {
        Ok(o) => Some(o.four_octet_as),
        Err(n) => {
            send(&n);
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut stream)) = data.split_first() else {
        return;
    };
    let mut four = flags & 1 != 0;
    let mut first = true;
    loop {
        let frame = match next(&mut stream) {
            Ok(f) => f,
            Err(ReadError::Header(n)) => return send(&n),
            Err(_) => return,
        };
        if std::mem::take(&mut first) && frame.kind == kind::OPEN {
            four = open(&frame).unwrap_or(four);
            continue;
        }
        match frame.kind {
            kind::UPDATE => {
                if let Verdict::Reset(n) = wire::check_update(&frame, four).verdict {
                    send(&n);
                }
            }
            kind::ROUTE_REFRESH => {
                if let Err(n) = wire::parse_route_refresh(&frame) {
                    send(&n);
                }
            }
            kind::NOTIFICATION => {
                let (code, subcode) = wire::parse_notification(&frame);
                let _ = wire::describe(code, subcode);
            }
            // A second OPEN is an FSM error to the session; parsed here too,
            // for the parser's sake.
            kind::OPEN => {
                open(&frame);
            }
            _ => {}
        }
    }
});
