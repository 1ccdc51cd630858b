//! A daemon's servers (gRPC on the unix socket, gRPC over TCP, metrics) run
//! side by side, stopped together, and drained with a bounded grace.

use crate::Error;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{Bytes, Service};
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic::transport::{Server, ServerTlsConfig};
use tower::Layer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The servers of one daemon. Each is spawned with a future from
/// [`Servers::stopped`] as its shutdown signal; [`Servers::wait`] runs them
/// until the daemon's shutdown (or until one of them fails), and
/// [`Servers::drain`] stops them all and waits for the calls under way.
pub struct Servers {
    tasks: JoinSet<Result<(), Error>>,
    stop: watch::Sender<bool>,
}

impl Default for Servers {
    fn default() -> Self {
        Self::new()
    }
}

impl Servers {
    /// No servers yet.
    pub fn new() -> Self {
        Servers {
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
        }
    }

    /// A future that completes when the servers are told to stop: give one
    /// to each server as its graceful-shutdown signal.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Runs `server` as a task; `what` names it in its errors (`gRPC over
    /// TCP`).
    pub fn spawn<E>(
        &mut self,
        what: &'static str,
        server: impl Future<Output = Result<(), E>> + Send + 'static,
    ) where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.tasks.spawn(async move {
            server.await.map_err(|e| Error::Server {
                what,
                source: e.into(),
            })
        });
    }

    /// Serves the gRPC `routes` through `layer` (trellisd's RPC metrics;
    /// `tower::layer::util::Identity` for none) on `unix`, the unix socket's
    /// connections, and, when `tcp` is given, on its listener, with TLS when
    /// configured: two servers, stopped with the others.
    pub fn spawn_grpc<L, U, IO, IE, B>(
        &mut self,
        layer: L,
        routes: &Routes,
        unix: U,
        tcp: Option<(TcpListener, Option<ServerTlsConfig>)>,
    ) -> Result<(), Error>
    where
        L: Layer<Routes> + Clone + Send + 'static,
        L::Service: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        <L::Service as Service<Request<Body>>>::Future: Send + 'static,
        <L::Service as Service<Request<Body>>>::Error: Into<BoxError> + Send,
        U: Stream<Item = Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<BoxError> + 'static,
        B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let on_unix = Server::builder()
            .layer(layer.clone())
            .add_routes(routes.clone())
            .serve_with_incoming_shutdown(unix, self.stopped());
        self.spawn("gRPC on the unix socket", on_unix);
        if let Some((listener, tls)) = tcp {
            let on_tcp = crate::tls::server(tls)?
                .layer(layer)
                .add_routes(routes.clone())
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), self.stopped());
            self.spawn("gRPC over TCP", on_tcp);
        }
        Ok(())
    }

    /// Waits for `shutdown`. A server that ends before it is an error: the
    /// others are stopped, and its error (or [`Error::ServerStopped`]) is
    /// returned.
    pub async fn wait(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tokio::select! {
            () = shutdown => {
                tracing::info!("shutting down");
                Ok(())
            }
            Some(done) = self.tasks.join_next() => {
                self.stop.send_replace(true);
                self.tasks.abort_all();
                done.map_err(Error::Task)?.and(Err(Error::ServerStopped))
            }
        }
    }

    /// Tells every server to stop, and waits for them to finish their calls
    /// for at most `grace`; calls still open then are dropped with their
    /// connections. Returns the first server's error, if any.
    pub async fn drain(mut self, grace: Duration) -> Result<(), Error> {
        self.stop.send_replace(true);
        let all = async {
            let mut first_err = None;
            while let Some(done) = self.tasks.join_next().await {
                if let Err(e) = done.map_err(Error::Task).and_then(|r| r) {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        };
        match tokio::time::timeout(grace, all).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "calls still open after the grace period; dropping them"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[tokio::test]
    async fn servers_stop_together_at_shutdown() {
        let mut servers = Servers::new();
        for _ in 0..2 {
            let stopped = servers.stopped();
            servers.spawn("test server", async move {
                stopped.await;
                Ok::<_, Infallible>(())
            });
        }
        servers.wait(async {}).await.unwrap();
        servers.drain(Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_ends_on_its_own_is_an_error() {
        let mut servers = Servers::new();
        let stopped = servers.stopped();
        servers.spawn("patient", async move {
            stopped.await;
            Ok::<_, Infallible>(())
        });
        servers.spawn("quitter", async { Ok::<_, Infallible>(()) });
        let e = servers.wait(std::future::pending()).await.unwrap_err();
        assert!(matches!(e, Error::ServerStopped), "{e}");

        let mut servers = Servers::new();
        servers.spawn("failing", async { Err("no luck") });
        let e = servers.wait(std::future::pending()).await.unwrap_err();
        assert_eq!(e.to_string(), "failing");
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_gives_up_after_the_grace() {
        let mut servers = Servers::new();
        servers.spawn("stuck", std::future::pending::<Result<(), Infallible>>());
        servers.wait(async {}).await.unwrap();
        servers.drain(Duration::from_secs(10)).await.unwrap();
    }
}
