//! Netlink requests as data, and the one executor that applies them.
//!
//! The builders of trellis-link and trellis-route (and the few shared ones in
//! [`crate::msg`] and [`crate::lookup`]) are pure functions returning
//! [`Request`] values; unit tests compare those values. Only this module
//! talks to a socket: [`apply`] pipelines a batch on one socket and
//! [`fetch`] reads, retrying the kernel's `EBUSY` for a dump.

use crate::error::KernelError;
use futures::StreamExt;
use netlink_packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use std::io;

/// Flags for a create that must not touch an existing object.
pub const CREATE_EXCL: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
/// Flags for an idempotent create-or-replace.
pub const CREATE_REPLACE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
/// Flags for a change or delete of one object.
pub const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;
/// Flags for a dump.
pub const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;
/// Flags for a get of one object.
pub const GET: u16 = NLM_F_REQUEST;

/// One netlink request, with what it is for (used in error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What it does, lowercase (`"create veth"`).
    pub op: &'static str,
    /// What it does it to (`"tr0123456789abc"`).
    pub subject: String,
    /// Netlink header flags.
    pub flags: u16,
    /// The message.
    pub message: RouteNetlinkMessage,
    /// Errnos that mean "already done" (ENODEV for a delete, EEXIST never).
    pub done_if: &'static [Errno],
}

impl Request {
    /// A request that fails on any error.
    pub fn new(
        op: &'static str,
        subject: impl Into<String>,
        flags: u16,
        message: RouteNetlinkMessage,
    ) -> Self {
        Self {
            op,
            subject: subject.into(),
            flags,
            message,
            done_if: &[],
        }
    }

    /// Treats the kernel answering with any of `errnos` as success (idempotent deletes).
    pub fn done_if(mut self, errnos: &'static [Errno]) -> Self {
        self.done_if = errnos;
        self
    }

    fn error(&self, source: io::Error) -> KernelError {
        KernelError {
            op: self.op,
            subject: self.subject.clone(),
            source,
        }
    }
}

/// The kernel's refusal `e` (an `NLMSG_ERROR` with a code) as an I/O error
/// carrying its errno. Not netlink-packet-core's `ErrorMessage::to_io`: its
/// `abs()` overflows on a code of `i32::MIN` (a panic where overflow checks
/// are on), which no kernel sends but a malformed reply can hold (found by
/// `fuzz/`'s netlink_reply).
pub fn refusal(e: &ErrorMessage) -> io::Error {
    io::Error::from_raw_os_error(e.raw_code().saturating_abs())
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "netlink connection closed")
}

/// How many requests of one batch are sent before their answers are read:
/// a bound on what one batch can queue on the shared host socket at once
/// (the kernel answers a request inside the `sendmsg` that carries it, and
/// answers the receive buffer cannot take are dropped: `ENOBUFS`).
pub const WINDOW: usize = 32;

/// How long one request may wait for its answer. The kernel answers in
/// microseconds to milliseconds (a batched teardown: tens of them); none at
/// all means the answer was lost (a receive buffer overrun), and waiting on
/// would hang the caller for good.
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The next message answering `req` (`None`: the answer is complete),
/// waiting at most [`ANSWER_TIMEOUT`] for it.
async fn next_answer<S>(stream: &mut S, req: &Request) -> Result<Option<S::Item>, KernelError>
where
    S: futures::Stream + Unpin,
{
    tokio::time::timeout(ANSWER_TIMEOUT, stream.next())
        .await
        .map_err(|_| {
            req.error(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer from the kernel (lost to a netlink receive buffer overrun?)",
            ))
        })
}

/// Sends the requests in windows of [`WINDOW`] (the kernel handles them in
/// order on the one socket) and collects each answer: one round trip's
/// latency per window.
pub async fn apply_each(
    handle: &rtnetlink::Handle,
    requests: Vec<Request>,
) -> Vec<Result<(), KernelError>> {
    let mut results = Vec::with_capacity(requests.len());
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        let window: Vec<Request> = requests.by_ref().take(WINDOW).collect();
        results.extend(apply_window(handle, window).await);
    }
    results
}

async fn apply_window(
    handle: &rtnetlink::Handle,
    requests: Vec<Request>,
) -> Vec<Result<(), KernelError>> {
    let mut handle = handle.clone();
    let mut pending = Vec::with_capacity(requests.len());
    for req in requests {
        let mut msg = NetlinkMessage::from(req.message.clone());
        msg.header.flags = req.flags;
        let stream = handle.request(msg);
        pending.push((req, stream));
    }
    let mut results = Vec::with_capacity(pending.len());
    for (req, stream) in pending {
        let Ok(mut stream) = stream else {
            results.push(Err(req.error(closed())));
            continue;
        };
        let mut result = Ok(());
        loop {
            let msg = match next_answer(&mut stream, &req).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let NetlinkPayload::Error(e) = msg.payload
                && e.code.is_some()
            {
                let errno = Errno::from_raw(e.raw_code().saturating_abs());
                if req.done_if.contains(&errno) {
                    tracing::trace!(op = req.op, subject = %req.subject, %errno, "already done");
                } else {
                    result = Err(req.error(refusal(&e)));
                }
            }
        }
        results.push(result);
    }
    results
}

/// Like [`apply_each`], returning the first failure.
pub async fn apply(handle: &rtnetlink::Handle, requests: Vec<Request>) -> Result<(), KernelError> {
    apply_each(handle, requests).await.into_iter().collect()
}

/// Sends a get or dump request and returns the messages it answers with.
///
/// The kernel runs one dump at a time per socket and answers a second one,
/// sent while the first is still under way on the shared host socket (two
/// requests reading the host at once), with `EBUSY`: that is retried, for up
/// to about a second, rather than reported.
pub async fn fetch(
    handle: &rtnetlink::Handle,
    req: Request,
) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
    const TRIES: u32 = 200;
    for _ in 1..TRIES {
        match fetch_once(handle, &req).await {
            Err(e) if e.is(Errno::EBUSY) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
    fetch_once(handle, &req).await
}

/// Sends one change with `NLM_F_ECHO` and returns what the kernel echoes
/// of the object it made or changed (Linux ≥ 6.1 echoes a new link; older
/// kernels answer with the acknowledgement alone: an empty list). A failure
/// is reported as [`apply`] reports it.
pub async fn echo(
    handle: &rtnetlink::Handle,
    mut req: Request,
) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
    req.flags |= NLM_F_ECHO;
    fetch_once(handle, &req).await
}

async fn fetch_once(
    handle: &rtnetlink::Handle,
    req: &Request,
) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
    let mut handle = handle.clone();
    let mut msg = NetlinkMessage::from(req.message.clone());
    msg.header.flags = req.flags;
    let mut stream = handle.request(msg).map_err(|_| req.error(closed()))?;
    let mut out = Vec::new();
    while let Some(msg) = next_answer(&mut stream, req).await? {
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => out.push(m),
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(req.error(refusal(&e))),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `NLMSG_ERROR` with `code` (native endianness), as the kernel frames it.
    fn error_reply(code: i32) -> ErrorMessage {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&36u32.to_ne_bytes()); // length
        bytes.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        bytes.extend_from_slice(&[0; 10]); // flags, sequence, port
        bytes.extend_from_slice(&code.to_ne_bytes());
        bytes.extend_from_slice(&[0; 16]); // the request's header
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        let NetlinkPayload::Error(e) = msg.payload else {
            panic!("not an error: {msg:?}")
        };
        e
    }

    #[test]
    fn a_refusal_carries_the_errno_and_a_code_of_i32_min_does_not_panic() {
        assert_eq!(
            refusal(&error_reply(-19)).raw_os_error(),
            Some(19),
            "ENODEV"
        );
        // fuzz/'s netlink_reply found this one: `to_io` panicked on it.
        let e = refusal(&error_reply(i32::MIN));
        assert_eq!(e.raw_os_error(), Some(i32::MAX));
        let e = KernelError {
            op: "get link",
            subject: "eth0".into(),
            source: e,
        };
        assert!(!e.is(Errno::ENODEV), "{e}");
    }
}
