//! The same TLS configuration for tokio-postgres SQL connections: a small
//! `MakeTlsConnect` on tokio-rustls that also provides SCRAM channel binding data.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::{server_name, tls_server_end_point, TlsError};
use crate::endpoint::{Endpoint, SslMode};

/// The tokio-postgres sslmode for ours. tokio-postgres knows only disable, prefer and
/// require: `allow` maps to `Prefer` (TLS first instead of plaintext first: it connects
/// wherever allow would, but prefers TLS), and `verify-ca`/`verify-full` map to `Require`
/// with the verification done by our rustls configuration ([`MakePgTls`]).
pub fn tokio_postgres_ssl_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode as Pg;
    match mode {
        SslMode::Disable => Pg::Disable,
        SslMode::Allow | SslMode::Prefer => Pg::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
    }
}

impl Endpoint {
    /// A tokio-postgres configuration for this endpoint (use it with [`MakePgTls`]).
    pub fn tokio_postgres_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        if self.host.starts_with('/') {
            config.host_path(&self.host);
        } else {
            config.host(&self.host);
        }
        if let Some(addr) = self.hostaddr {
            config.hostaddr(addr);
        }
        config.port(self.port).user(&self.user).dbname(&self.dbname);
        config.ssl_mode(tokio_postgres_ssl_mode(self.tls.mode));
        if let Some(password) = self.password() {
            config.password(password);
        }
        if let Some(name) = &self.application_name {
            config.application_name(name);
        }
        if let Some(options) = &self.options {
            config.options(options);
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout(timeout);
        }
        config
    }
}

/// `MakeTlsConnect` for tokio-postgres from one of our rustls configurations.
#[derive(Clone)]
pub struct MakePgTls {
    config: Arc<ClientConfig>,
}

impl MakePgTls {
    /// Wraps a rustls configuration (see [`super::TlsConnector::make_tls_connect`]).
    pub fn new(config: Arc<ClientConfig>) -> MakePgTls {
        MakePgTls { config }
    }
}

impl<S> MakeTlsConnect<S> for MakePgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, TlsError> {
        Ok(PgTlsConnect {
            config: Arc::clone(&self.config),
            name: server_name(domain)?,
        })
    }
}

/// One pending TLS handshake for tokio-postgres.
pub struct PgTlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(PgTlsStream(connector.connect(self.name, stream).await?)) })
    }
}

/// A TLS stream for tokio-postgres that offers `tls-server-end-point` channel binding.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        let data = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| tls_server_end_point(cert));
        match data {
            Some(data) => ChannelBinding::tls_server_end_point(data),
            None => ChannelBinding::none(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
