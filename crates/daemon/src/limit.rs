//! A bound on the gRPC calls a daemon has under way at once, so that a storm
//! of clients (a node starting a thousand pods together, a runaway script)
//! costs a bounded amount of memory and gets a quick answer, never an
//! ever-growing pile of calls inside the daemon.
//!
//! Design decisions:
//!
//! * **Refuse at once, never queue.** A call over the limit is answered
//!   `UNAVAILABLE` straight away (a proper gRPC answer: HTTP 200,
//!   `grpc-status: 14` and a message saying why), the code gRPC clients
//!   retry with backoff. Waiting for a permit would only move the unbounded
//!   pile from the service into this layer. tonic's own
//!   `concurrency_limit_per_connection` is no substitute: it waits, and it
//!   counts per connection, of which a client opens as many as it likes.
//! * **One count per daemon, not per connection or per server.** The
//!   permits live behind the [`CallLimitLayer`], and its clones share them:
//!   give one layer to the unix-socket and the TCP server and a call counts
//!   the same on either.
//! * **Calls and watches counted apart.** A Watch stays open for hours, so
//!   server-streaming calls (trellis names every one of them `Watch`) have a
//!   limit of their own: a thousand watchers never take the places of
//!   Attach and Detach. Each permit lives as long as the response body —
//!   until the reply is sent, the stream ends or the client goes away — so
//!   what it counts is exactly what the daemon holds.
//! * **Health and reflection are never refused.** They answer from memory
//!   and are what an operator needs most from a busy daemon
//!   (`grpc_health_probe`, `grpcurl`); a probe refused under load would have
//!   the daemon restarted for being busy.
//! * **Refusals are marked.** The response carries a [`Refused`] extension,
//!   so that a metrics layer outside this one counts them apart from other
//!   `UNAVAILABLE` answers.

use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http::{Request, Response};
use tower::{Layer, Service};

/// How many calls a daemon's servers may have under way at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Unary calls: from the request until its reply is sent.
    pub calls: NonZeroUsize,
    /// Server-streaming calls (`Watch`): for as long as the stream is open.
    pub watches: NonZeroUsize,
}

/// What a call is to the limits, told by its path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `grpc.health.v1.Health` and server reflection: never refused.
    Exempt,
    /// A unary call, counted against [`CallLimits::calls`].
    Unary,
    /// A server stream (the path ends in `/Watch`), counted against
    /// [`CallLimits::watches`].
    Watch,
}

impl CallKind {
    /// The kind of a call to `path` (`/trellis.v1.Agent/Attach`).
    pub fn of(path: &str) -> CallKind {
        if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
            CallKind::Exempt
        } else if path.ends_with("/Watch") {
            CallKind::Watch
        } else {
            CallKind::Unary
        }
    }
}

/// The extension of a response that [`CallLimitService`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub CallKind);

/// One limit: its permits, its size and how its calls are named in the
/// refusal (`requests in flight`, `watches open`).
#[derive(Debug, Clone)]
struct Gate {
    permits: Arc<Semaphore>,
    limit: usize,
    what: &'static str,
}

impl Gate {
    fn new(limit: NonZeroUsize, what: &'static str) -> Self {
        let limit = limit.get().min(Semaphore::MAX_PERMITS);
        Gate {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            what,
        }
    }

    /// A permit, or `None` at once when all are taken.
    fn enter(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// Wraps a gRPC server's service in a [`CallLimitService`]. Clones share
/// their permits.
#[derive(Debug, Clone)]
pub struct CallLimitLayer {
    daemon: &'static str,
    calls: Gate,
    watches: Gate,
}

impl CallLimitLayer {
    /// Limits of the daemon named `daemon` (`trellisd`, in refusals).
    pub fn new(daemon: &'static str, limits: CallLimits) -> Self {
        CallLimitLayer {
            daemon,
            calls: Gate::new(limits.calls, "requests in flight"),
            watches: Gate::new(limits.watches, "watches open"),
        }
    }
}

impl<S> Layer<S> for CallLimitLayer {
    type Service = CallLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimitService {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service [`CallLimitLayer`] builds: admits a call when a permit of
/// its kind is free and answers `UNAVAILABLE` at once otherwise.
#[derive(Debug, Clone)]
pub struct CallLimitService<S> {
    inner: S,
    limits: CallLimitLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CallLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<LimitedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let kind = CallKind::of(req.uri().path());
        let gate = match kind {
            CallKind::Exempt => None,
            CallKind::Unary => Some(&self.limits.calls),
            CallKind::Watch => Some(&self.limits.watches),
        };
        // Taken here, not in the future: a call counts from the moment it
        // is accepted, and a refusal needs no polling to be decided.
        let permit = match gate {
            None => None,
            Some(gate) => match gate.enter() {
                Some(permit) => Some(permit),
                None => {
                    let refusal = refusal(self.limits.daemon, gate, kind, req.uri().path());
                    return Box::pin(std::future::ready(Ok(refusal)));
                }
            },
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            Ok(res.map(|body| LimitedBody {
                inner: Some(Box::pin(body)),
                _permit: permit,
            }))
        })
    }
}

/// The `UNAVAILABLE` answer to a call that found every permit of `gate`
/// taken: at that moment exactly `gate.limit` were in flight.
fn refusal<B>(daemon: &str, gate: &Gate, kind: CallKind, path: &str) -> Response<LimitedBody<B>> {
    let (n, what) = (gate.limit, gate.what);
    tracing::debug!(path, "refused a call: {n} {what}");
    let status =
        tonic::Status::unavailable(format!("{daemon} is busy: {n} {what} (limit {n}); retry"));
    let mut res = status.into_http::<LimitedBody<B>>();
    res.extensions_mut().insert(Refused(kind));
    res
}

/// A response body holding its call's permit until it is dropped: when the
/// reply has been sent, the stream has ended or the client has gone away.
/// A refusal's body is empty (its status travels in the headers).
pub struct LimitedBody<B> {
    inner: Option<Pin<Box<B>>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<B> Default for LimitedBody<B> {
    /// An empty body, holding no permit.
    fn default() -> Self {
        LimitedBody {
            inner: None,
            _permit: None,
        }
    }
}

impl<B: Body> Body for LimitedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
