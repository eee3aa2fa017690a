//! Opening a session: socket, SSLRequest negotiation per sslmode, startup packet.

use std::net::SocketAddr;

use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::stream::{connect_tcp, PgStream};
use super::{auth, ConnectOptions, Connection};
use crate::endpoint::{Endpoint, SslMode};
use crate::error::{Error, INVALID_AUTHORIZATION_SPECIFICATION};
use crate::tls::TlsConnector;

/// What to do about TLS on one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsStep {
    /// No SSLRequest.
    Plain,
    /// SSLRequest; plaintext if the server answers 'N'.
    IfOffered,
    /// SSLRequest; an error if the server answers 'N'.
    Required,
}

impl Connection {
    /// Connects and authenticates, honouring sslmode and connect_timeout. The password
    /// must already be resolved (see [`Endpoint::resolve_password`]).
    ///
    /// Unix socket connections never use TLS, whatever the sslmode (as in libpq).
    pub async fn connect(
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<Connection, Error> {
        let tls = TlsConnector::for_endpoint(endpoint)?;
        Connection::connect_with_tls(endpoint, options, tls.as_ref()).await
    }

    /// Like [`Connection::connect`], with a TLS configuration built once for the endpoint
    /// ([`TlsConnector::for_endpoint`]) and shared by its connections; `None` is plaintext.
    pub async fn connect_with_tls(
        endpoint: &Endpoint,
        options: &ConnectOptions,
        tls: Option<&TlsConnector>,
    ) -> Result<Connection, Error> {
        let attempt = connect_per_mode(endpoint, options, tls);
        match endpoint.connect_timeout {
            None => attempt.await,
            Some(after) => {
                tokio::time::timeout(after, attempt)
                    .await
                    .map_err(|_| Error::Timeout {
                        endpoint: endpoint.describe(),
                        after,
                    })?
            }
        }
    }
}

async fn connect_per_mode(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    tls: Option<&TlsConnector>,
) -> Result<Connection, Error> {
    let Some(tls) = tls.filter(|_| !endpoint.is_unix_socket()) else {
        return attempt(endpoint, options, None, TlsStep::Plain).await;
    };
    match endpoint.tls.mode {
        SslMode::Disable => attempt(endpoint, options, None, TlsStep::Plain).await,
        SslMode::Allow => match attempt(endpoint, options, None, TlsStep::Plain).await {
            Err(e) if e.code() == Some(INVALID_AUTHORIZATION_SPECIFICATION) => {
                tracing::debug!(error = %e, "plaintext login refused; retrying with TLS (sslmode=allow)");
                attempt(endpoint, options, Some(tls), TlsStep::Required).await
            }
            other => other,
        },
        SslMode::Prefer => match attempt(endpoint, options, Some(tls), TlsStep::IfOffered).await {
            Err(e @ Error::TlsHandshake { .. }) => {
                tracing::debug!(error = %e, "TLS handshake failed; retrying without TLS (sslmode=prefer)");
                attempt(endpoint, options, None, TlsStep::Plain).await
            }
            other => other,
        },
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            attempt(endpoint, options, Some(tls), TlsStep::Required).await
        }
    }
}

async fn attempt(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    tls: Option<&TlsConnector>,
    step: TlsStep,
) -> Result<Connection, Error> {
    let stream = match tls.filter(|_| step != TlsStep::Plain) {
        None => open_socket(endpoint, options).await?,
        Some(tls) => negotiate_tls(endpoint, open_tcp(endpoint, options).await?, tls, step).await?,
    };
    let mut conn = Connection::new(stream, endpoint.describe());
    startup(&mut conn, endpoint, options).await?;
    Ok(conn)
}

async fn open_socket(endpoint: &Endpoint, options: &ConnectOptions) -> Result<PgStream, Error> {
    if endpoint.is_unix_socket() {
        let path = endpoint.socket_path();
        let unix = UnixStream::connect(&path)
            .await
            .map_err(|source| Error::Connect {
                endpoint: format!("{} (socket {})", endpoint.describe(), path.display()),
                source,
            })?;
        return Ok(PgStream::Unix(unix));
    }
    Ok(PgStream::Tcp(open_tcp(endpoint, options).await?))
}

/// Tries each address of the host (or `hostaddr`) in turn.
async fn open_tcp(endpoint: &Endpoint, options: &ConnectOptions) -> Result<TcpStream, Error> {
    let connect_error = |source| Error::Connect {
        endpoint: endpoint.describe(),
        source,
    };
    let addrs: Vec<SocketAddr> = match endpoint.hostaddr {
        Some(ip) => vec![SocketAddr::new(ip, endpoint.port)],
        None => tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(connect_error)?
            .collect(),
    };
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the host name resolved to no address",
    );
    for addr in addrs {
        match connect_tcp(addr, options.receive_buffer).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(connect_error(last))
}

/// Sends SSLRequest and, if the server agrees, runs the TLS handshake.
async fn negotiate_tls(
    endpoint: &Endpoint,
    mut tcp: TcpStream,
    tls: &TlsConnector,
    step: TlsStep,
) -> Result<PgStream, Error> {
    let mut request = bytes::BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    // Exactly one byte: nothing the server sends before the handshake may be buffered.
    match tcp.read_u8().await? {
        b'S' => {
            let stream =
                tls.handshake(&endpoint.host, tcp)
                    .await
                    .map_err(|reason| Error::TlsHandshake {
                        endpoint: endpoint.describe(),
                        reason,
                    })?;
            Ok(PgStream::Tls(Box::new(stream)))
        }
        b'N' if step == TlsStep::IfOffered => Ok(PgStream::Tcp(tcp)),
        b'N' => Err(Error::TlsRefused {
            endpoint: endpoint.describe(),
            mode: endpoint.tls.mode,
        }),
        other => Err(Error::Protocol(format!(
            "unexpected answer {other:#04x} to SSLRequest"
        ))),
    }
}

/// Sends the startup packet, authenticates and waits for ReadyForQuery.
async fn startup(
    conn: &mut Connection,
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> Result<(), Error> {
    let mut params: Vec<(&str, &str)> =
        vec![("user", &endpoint.user), ("database", &endpoint.dbname)];
    if let Some(name) = &endpoint.application_name {
        params.push(("application_name", name));
    }
    if let Some(opts) = &endpoint.options {
        params.push(("options", opts));
    }
    if options.replication {
        params.push(("replication", "database"));
    }
    params.extend(
        options
            .parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    frontend::startup_message(params, conn.write_buf())?;
    conn.flush().await?;
    conn.auth = auth::authenticate(conn, endpoint).await?;
    conn.wait_ready().await
}
