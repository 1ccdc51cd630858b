//! Serving the controller: its service, health and reflection on one
//! listener, stopped by a future the caller gives — the agent's way
//! ([`crate::server`]), over the controller.

use crate::EdgeServices;

/// The gRPC services of one controller, routed by path, for callers that
/// serve them on several listeners (trellis-controller: a unix socket and
/// TCP): `trellis.v1.Controller`, health and reflection.
pub type ControllerServices = EdgeServices<super::ControllerService>;

#[cfg(test)]
mod tests {
    use crate::controller::serve_unix;
    use std::sync::Arc;
    use tokio::net::UnixListener;
    use trellis_cluster::Controller;
    use trellis_proto::v1 as pb;

    #[tokio::test]
    async fn serve_unix_answers_and_a_shutdown_ends_open_watches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.sock");
        let store = Arc::new(trellis_store::MemoryStore::new());
        let controller = Arc::new(Controller::new(store, Default::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_unix(
            controller,
            UnixListener::bind(&path).unwrap(),
            async {
                let _ = stopped.await;
            },
        ));
        let channel = trellis_proto::channel_unix(&path).await.unwrap();
        let mut c = pb::ControllerClient::new(channel);
        let s = c.controller_status(pb::ControllerStatusRequest {}).await;
        assert_eq!(s.unwrap().into_inner().version, env!("CARGO_PKG_VERSION"));
        let req = pb::ControllerWatchRequest { from_revision: 0 };
        let mut w = c.watch(req).await.unwrap().into_inner();
        assert!(w.message().await.unwrap().is_some(), "the snapshot");

        stop.send(()).unwrap();
        let end = w.message().await;
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
        server.await.unwrap().unwrap();
    }
}
