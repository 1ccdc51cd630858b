//! A deliberately tiny HTTP/1.1 server for `GET /metrics`.
//!
//! Prometheus needs one endpoint that answers GET with text; a full HTTP
//! stack is not worth its dependencies here. Each connection gets one
//! request and one response (`Connection: close`); requests are read with a
//! size cap and a timeout so that a slow or hostile client cannot hold a task
//! forever.

use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Requests larger than this are refused.
const MAX_REQUEST: usize = 8 * 1024;
/// A client has this long to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `render()`'s text at `/metrics` on `listener` until `shutdown`
/// completes. Connections are served concurrently.
pub async fn serve<R, Fut>(listener: TcpListener, render: R, shutdown: impl Future<Output = ()>)
where
    R: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = String> + Send,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let render = render.clone();
                    tokio::spawn(async move {
                        if let Err(e) = one(stream, render).await {
                            tracing::debug!(error = %e, "metrics connection");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn one<R, Fut>(mut stream: TcpStream, render: R) -> std::io::Result<()>
where
    R: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let response = match route(&head) {
        Route::Metrics => reply(
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            &render().await,
        ),
        Route::Root => reply(
            "200 OK",
            "text/plain; charset=utf-8",
            "trellisd: see /metrics\n",
        ),
        Route::NotFound => reply("404 Not Found", "text/plain", "not found\n"),
        Route::BadMethod => reply("405 Method Not Allowed", "text/plain", "GET only\n"),
        Route::Bad => reply("400 Bad Request", "text/plain", "bad request\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads until the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Root,
    NotFound,
    BadMethod,
    Bad,
}

fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    if method != "GET" {
        return Route::BadMethod;
    }
    match target.split('?').next() {
        Some("/metrics") => Route::Metrics,
        Some("/") => Route::Root,
        _ => Route::NotFound,
    }
}

fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::Root);
        assert_eq!(route("GET /nope HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route("garbage"), Route::Bad);
        assert_eq!(route(""), Route::Bad);
    }

    #[tokio::test]
    async fn serves_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            || async { "x_total 1\n".to_owned() },
            async {
                rx.await.ok();
            },
        ));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nx_total 1\n"), "{got}");
        tx.send(()).unwrap();
        server.await.unwrap();
    }
}
