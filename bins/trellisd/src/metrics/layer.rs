//! A tower layer that counts and times gRPC calls from the outside.
//!
//! A gRPC status travels either in the response headers (a "trailers-only"
//! response: how tonic answers errors) or in the trailers after the body. The
//! layer looks at the headers first and otherwise wraps the body to read its
//! trailers, so a call is recorded when its status is known: latency runs
//! from the request to the status. A body dropped before its status (the
//! client went away) counts as `CANCELLED`; one that ends without a status as
//! `UNKNOWN`. A response marked [`Refused`] (the call limits of
//! `trellis_daemon::limit`, inside this layer) also counts as refused.

use super::{MethodLabels, RpcMetrics};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};
use trellis_daemon::limit::Refused;

/// Wraps a gRPC server's service in [`RpcMetricsService`].
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: RpcMetrics,
}

impl RpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] builds.
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: RpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcMetricsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Send + 'static,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let call = Call {
            metrics: self.metrics.clone(),
            method: method_labels(req.uri().path()),
            start: Instant::now(),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if res.extensions().get::<Refused>().is_some() {
                call.metrics.refused(&call.method);
            }
            let mut call = Some(call);
            if let Some(code) = status_code(res.headers()) {
                call.take().expect("present").finish(code);
            }
            Ok(res.map(|body| MeteredBody {
                inner: Box::pin(body),
                call,
            }))
        })
    }
}

/// A call in flight, recorded once when its status is known.
struct Call {
    metrics: RpcMetrics,
    method: MethodLabels,
    start: Instant,
}

impl Call {
    fn finish(self, code: &str) {
        let seconds = self.start.elapsed().as_secs_f64();
        self.metrics.record(self.method, code, seconds);
    }
}

/// A response body that records its call when the trailers pass by.
pub struct MeteredBody<B> {
    inner: Pin<Box<B>>,
    call: Option<Call>,
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code)
                    && let Some(call) = self.call.take()
                {
                    call.finish(code);
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.finish("UNKNOWN");
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish("CANCELLED");
        }
    }
}

/// `/trellis.v1.Agent/Attach` → (`trellis.v1.Agent`, `Attach`). Anything else
/// is folded into one label value so that junk paths cannot grow the series.
fn method_labels(path: &str) -> MethodLabels {
    let parts = path.strip_prefix('/').and_then(|p| p.split_once('/'));
    match parts {
        Some((service, method)) if is_name(service) && is_name(method) => MethodLabels {
            service: service.to_owned(),
            method: method.to_owned(),
        },
        _ => MethodLabels {
            service: "unknown".into(),
            method: "unknown".into(),
        },
    }
}

fn is_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
}

/// The name of the `grpc-status` in `headers`, if there is one.
fn status_code(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let n: i32 = value.to_str().ok()?.trim().parse().ok()?;
    Some(code_name(n))
}

/// The canonical names of gRPC status codes (as in the `.proto` docs).
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_labels() {
        let m = method_labels("/trellis.v1.Agent/Attach");
        assert_eq!(
            (m.service.as_str(), m.method.as_str()),
            ("trellis.v1.Agent", "Attach")
        );
        for junk in ["/", "", "/a/b/c", "/x y/z", "/only"] {
            assert_eq!(method_labels(junk).service, "unknown", "{junk:?}");
        }
    }

    #[test]
    fn status_codes_by_name() {
        let mut h = HeaderMap::new();
        assert_eq!(status_code(&h), None);
        h.insert("grpc-status", "3".parse().unwrap());
        assert_eq!(status_code(&h), Some("INVALID_ARGUMENT"));
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(99), "UNKNOWN");
        assert_eq!(code_name(-1), "UNKNOWN");
    }
}
