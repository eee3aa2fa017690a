//! A small HTTP/1.x listener for `/metrics` and `/health`: one request per connection, GET or
//! HEAD, answered and closed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::health::{self, Phase};

/// The largest request head read.
const MAX_HEAD: usize = 8 << 10;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address is in use or cannot be bound.
    #[error(
        "cannot listen for metrics on {addr} ([metrics] listen): {source}; choose a free \
         address and port, or stop the process that holds it"
    )]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// The running listener; stops when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The address it listens on (with the port chosen when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Installs the metrics and serves `/metrics` and `/health` on `addr` until the returned
/// [`Server`] is dropped.
pub async fn serve(addr: SocketAddr) -> Result<Server, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    super::install();
    health::set(health::current());
    tracing::info!(listen = %local, "serving /metrics and /health");
    let task = tokio::spawn(accept(listener));
    Ok(Server { addr: local, task })
}

async fn accept(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream));
            }
            Err(e) => {
                tracing::debug!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream) {
    let Ok(Some(head)) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let reply = respond(&head);
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the end of the request head; `None` if the client sent none.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !ends_head(&buf) && buf.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

fn ends_head(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// The whole response to a request head.
fn respond(head: &str) -> Vec<u8> {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            super::render(),
        ),
        ("GET" | "HEAD", "/health") => match health::current() {
            Phase::Streaming => ("200 OK", TEXT, "streaming\n".to_string()),
            other => (
                "503 Service Unavailable",
                TEXT,
                format!("{}\n", other.as_str()),
            ),
        },
        (_, "/metrics" | "/health") => {
            ("405 Method Not Allowed", TEXT, "only GET and HEAD\n".into())
        }
        _ => ("404 Not Found", TEXT, "try /metrics or /health\n".into()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

const TEXT: &str = "text/plain; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn text(head: &str) -> String {
        String::from_utf8(respond(head)).unwrap()
    }

    #[test]
    fn answers_metrics_health_and_nothing_else() {
        super::super::install();
        let metrics = text("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("version=0.0.4"), "{metrics}");
        assert!(metrics.contains("# TYPE pgmorph_transactions_applied_total counter"));
        let health = text("GET /health?verbose HTTP/1.0\r\n\r\n");
        let phase = health::current();
        let expected = match phase {
            Phase::Streaming => "HTTP/1.1 200 OK",
            _ => "HTTP/1.1 503 Service Unavailable",
        };
        assert!(health.starts_with(expected), "{health}");
        assert!(health.ends_with(&format!("\r\n\r\n{}\n", phase.as_str())));
        let head = text("HEAD /health HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        assert!(text("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(text("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(text("").starts_with("HTTP/1.1 404"));
    }

    #[tokio::test]
    async fn a_taken_port_is_named_in_the_error() {
        let first = serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let err = serve(first.local_addr()).await.unwrap_err().to_string();
        assert!(
            err.contains(&first.local_addr().to_string()) && err.contains("[metrics] listen"),
            "{err}"
        );
    }
}
