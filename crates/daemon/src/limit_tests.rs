//! The limits with a fake slow service: full, freed, watches apart, exempt
//! paths, shared between servers; every refusal checked to come at once.

use super::*;
use std::convert::Infallible;
use std::time::Duration;
use tonic::body::Body as TonicBody;
use tower::ServiceExt;

/// A service whose calls each wait for one permit of `latch`, then
/// answer with an empty body.
#[derive(Clone)]
struct Slow {
    latch: Arc<Semaphore>,
}

impl Service<Request<()>> for Slow {
    type Response = Response<TonicBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let latch = self.latch.clone();
        Box::pin(async move {
            latch.acquire().await.expect("never closed").forget();
            Ok(Response::new(TonicBody::empty()))
        })
    }
}

type Limited = CallLimitService<Slow>;
type Answer = Result<Response<LimitedBody<TonicBody>>, Infallible>;

/// A limited [`Slow`] service (calls `calls`, watches `watches`) and
/// its latch.
fn limited(calls: usize, watches: usize) -> (Limited, Arc<Semaphore>) {
    let latch = Arc::new(Semaphore::new(0));
    let limits = CallLimits {
        calls: NonZeroUsize::new(calls).unwrap(),
        watches: NonZeroUsize::new(watches).unwrap(),
    };
    let layer = CallLimitLayer::new("trellisd", limits);
    (
        layer.layer(Slow {
            latch: latch.clone(),
        }),
        latch,
    )
}

/// Starts a call to `path`: its permit (if any) is taken now.
async fn start(svc: &mut Limited, path: &str) -> BoxFuture<Answer> {
    let req = Request::builder().uri(path).body(()).unwrap();
    svc.ready().await.unwrap().call(req)
}

/// The answer of a call that must come at once, however long the
/// admitted ones take (time is paused: a wait would time out).
async fn at_once(call: BoxFuture<Answer>) -> Response<LimitedBody<TonicBody>> {
    tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .expect("answered at once")
        .unwrap()
}

/// The message of a refusal, checked to be a proper gRPC UNAVAILABLE.
fn refused(res: &Response<LimitedBody<TonicBody>>) -> String {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "14");
    assert!(res.body().is_end_stream());
    let status = tonic::Status::from_header_map(res.headers()).expect("a status");
    status.message().to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_full_limit_refuses_the_next_call_at_once_with_unavailable() {
    let (mut svc, latch) = limited(3, 10);
    let mut admitted = Vec::new();
    for _ in 0..3 {
        admitted.push(start(&mut svc, "/trellis.v1.Agent/Attach").await);
    }
    let res = at_once(start(&mut svc, "/trellis.v1.Agent/Detach").await).await;
    assert_eq!(
        refused(&res),
        "trellisd is busy: 3 requests in flight (limit 3); retry"
    );
    assert_eq!(
        res.extensions().get::<Refused>(),
        Some(&Refused(CallKind::Unary))
    );
    latch.add_permits(3);
    for call in admitted {
        let res = call.await.unwrap();
        assert!(res.extensions().get::<Refused>().is_none());
        assert!(res.headers().get("grpc-status").is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn a_permit_is_freed_when_the_reply_is_sent() {
    let (mut svc, latch) = limited(1, 1);
    let first = start(&mut svc, "/trellis.v1.Agent/Attach").await;
    latch.add_permits(1);
    let reply = first.await.unwrap();
    // Answered, but its body not yet sent: still in flight.
    let res = at_once(start(&mut svc, "/trellis.v1.Agent/Status").await).await;
    assert!(refused(&res).contains("1 requests in flight"));
    drop(reply);
    latch.add_permits(1);
    let res = at_once(start(&mut svc, "/trellis.v1.Agent/Status").await).await;
    assert!(res.headers().get("grpc-status").is_none(), "admitted");
}

#[tokio::test(start_paused = true)]
async fn a_watch_holds_its_own_permit_until_its_stream_is_dropped() {
    let (mut svc, latch) = limited(1, 1);
    latch.add_permits(1);
    let watch = at_once(start(&mut svc, "/trellis.v1.Agent/Watch").await).await;
    assert!(watch.headers().get("grpc-status").is_none(), "admitted");
    let res = at_once(start(&mut svc, "/trellis.v1.Controller/Watch").await).await;
    assert_eq!(
        refused(&res),
        "trellisd is busy: 1 watches open (limit 1); retry"
    );
    assert_eq!(
        res.extensions().get::<Refused>(),
        Some(&Refused(CallKind::Watch))
    );
    // The open stream takes no place of a unary call.
    latch.add_permits(1);
    let unary = at_once(start(&mut svc, "/trellis.v1.Agent/Status").await).await;
    assert!(unary.headers().get("grpc-status").is_none(), "admitted");
    drop(watch);
    latch.add_permits(1);
    let again = at_once(start(&mut svc, "/trellis.v1.Agent/Watch").await).await;
    assert!(again.headers().get("grpc-status").is_none(), "admitted");
}

#[tokio::test(start_paused = true)]
async fn health_and_reflection_pass_a_full_limit() {
    let (mut svc, latch) = limited(1, 1);
    let _unary = start(&mut svc, "/trellis.v1.Agent/Attach").await;
    latch.add_permits(1);
    let _watch = at_once(start(&mut svc, "/trellis.v1.Agent/Watch").await).await;
    for path in [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        latch.add_permits(1);
        let res = at_once(start(&mut svc, path).await).await;
        assert!(res.headers().get("grpc-status").is_none(), "{path} refused");
    }
}

#[tokio::test(start_paused = true)]
async fn the_servers_of_one_layer_share_its_permits() {
    let latch = Arc::new(Semaphore::new(0));
    let limits = CallLimits {
        calls: NonZeroUsize::new(1).unwrap(),
        watches: NonZeroUsize::new(1).unwrap(),
    };
    let layer = CallLimitLayer::new("trellisd", limits);
    let mut unix = layer.layer(Slow {
        latch: latch.clone(),
    });
    let mut tcp = layer.clone().layer(Slow { latch });
    let _held = start(&mut unix, "/trellis.v1.Agent/Attach").await;
    let res = at_once(start(&mut tcp, "/trellis.v1.Agent/Attach").await).await;
    assert!(refused(&res).starts_with("trellisd is busy"));
}

#[test]
fn calls_are_told_apart_by_their_paths() {
    for (path, kind) in [
        ("/trellis.v1.Agent/Attach", CallKind::Unary),
        ("/trellis.v1.Bgp/ListPeers", CallKind::Unary),
        ("/trellis.v1.Agent/Watch", CallKind::Watch),
        ("/trellis.v1.Controller/Watch", CallKind::Watch),
        ("/grpc.health.v1.Health/Check", CallKind::Exempt),
        ("/grpc.health.v1.Health/Watch", CallKind::Exempt),
        (
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            CallKind::Exempt,
        ),
        ("/", CallKind::Unary),
        ("/x.Watcher/Watches", CallKind::Unary),
    ] {
        assert_eq!(CallKind::of(path), kind, "{path}");
    }
}
