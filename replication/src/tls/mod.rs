//! TLS with libpq's meaning: one rustls `ClientConfig` per endpoint built from its
//! sslmode, root, client certificate and SNI settings, on the `ring` provider.

mod binding;
mod postgres;
mod verify;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

pub use binding::{end_point_hash, tls_server_end_point, EndPointHash};
pub use postgres::{tokio_postgres_ssl_mode, MakePgTls, PgTlsConnect, PgTlsStream};

use crate::endpoint::{Endpoint, RootCert, SslMode, TlsSettings};
use verify::{Check, PgVerifier};

/// Problems building the TLS configuration (before any connection is made).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// verify-ca/verify-full without `sslrootcert` and without `~/.postgresql/root.crt`.
    #[error("sslmode={mode} verifies the server certificate but the root certificate file {} does not exist; set sslrootcert to the CA certificate (PEM) or to \"system\"", path.display())]
    RootCertMissing {
        /// The sslmode.
        mode: SslMode,
        /// The file that was looked for.
        path: PathBuf,
    },
    /// verify-ca/verify-full without `sslrootcert` and without a home directory.
    #[error("sslmode={0} verifies the server certificate but sslrootcert is not set (and HOME is unknown, so ~/.postgresql/root.crt cannot be used)")]
    NoRootCert(SslMode),
    /// A PEM file could not be read or holds nothing usable.
    #[error("could not use {what} {}: {reason}", path.display())]
    Pem {
        /// `sslrootcert`, `sslcert` or `sslkey`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `sslrootcert=system` but the system store could not be loaded.
    #[error("sslrootcert=system: could not load the system's CA certificates: {0}")]
    SystemRoots(String),
    /// `sslcert` without `sslkey`.
    #[error("sslcert {} is set but sslkey is not", .0.display())]
    KeyMissing(PathBuf),
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("invalid TLS client configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The host is not a valid DNS name or IP address for TLS.
    #[error("\"{0}\" is not a valid host name for TLS")]
    ServerName(String),
}

/// The TLS side of one endpoint: a shared rustls configuration plus the sslmode.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    mode: SslMode,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Builds the configuration for `endpoint`; `None` for sslmode=disable.
    pub fn for_endpoint(endpoint: &Endpoint) -> Result<Option<TlsConnector>, TlsError> {
        TlsConnector::from_settings(&endpoint.tls)
    }

    /// Builds the configuration from TLS settings; `None` for sslmode=disable.
    pub fn from_settings(settings: &TlsSettings) -> Result<Option<TlsConnector>, TlsError> {
        if settings.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let verifier = PgVerifier::new(certificate_check(settings)?, algorithms);
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match client_identity(settings)? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = settings.sni;
        Ok(Some(TlsConnector {
            config: Arc::new(config),
            mode: settings.mode,
        }))
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The sslmode this connector was built for.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// A `tokio_postgres::tls::MakeTlsConnect` using this configuration.
    pub fn make_tls_connect(&self) -> MakePgTls {
        MakePgTls::new(self.config())
    }

    /// Runs the handshake over `stream` for `host`; errors are explained in libpq terms.
    pub async fn handshake<S>(&self, host: &str, stream: S) -> Result<TlsStream<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = server_name(host).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.config());
        connector
            .connect(name, stream)
            .await
            .map_err(|e| explain_handshake_error(&e, host, self.mode))
    }
}

/// The TLS server name for a host: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

fn certificate_check(settings: &TlsSettings) -> Result<Check, TlsError> {
    let roots = match (settings.mode, &settings.root_cert) {
        (SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => {
            return Ok(Check::Nothing)
        }
        (_, Some(root)) => load_roots(root)?,
        (mode, None) => {
            let home = settings.home.as_ref().ok_or(TlsError::NoRootCert(mode))?;
            let path = home.join(".postgresql/root.crt");
            if !path.exists() {
                return Err(TlsError::RootCertMissing { mode, path });
            }
            load_roots(&RootCert::File(path))?
        }
    };
    Ok(match settings.mode {
        SslMode::VerifyFull => Check::ChainAndName(Arc::new(roots)),
        _ => Check::Chain(Arc::new(roots)),
    })
}

fn load_roots(root: &RootCert) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let certs = match root {
        RootCert::File(path) => read_certs("sslrootcert", path)?,
        RootCert::System => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                let reasons: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
                return Err(TlsError::SystemRoots(format!(
                    "none found ({})",
                    reasons.join("; ")
                )));
            }
            loaded.certs
        }
    };
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        let path = match root {
            RootCert::File(path) => path.clone(),
            RootCert::System => PathBuf::from("system"),
        };
        return Err(pem_error(
            "sslrootcert",
            &path,
            "no usable CA certificate in it",
        ));
    }
    Ok(store)
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `sslcert`/`sslkey`, or libpq's defaults `~/.postgresql/postgresql.{crt,key}` if present.
fn client_identity(settings: &TlsSettings) -> Result<Option<Identity>, TlsError> {
    let default = |name: &str| {
        settings
            .home
            .as_ref()
            .map(|h| h.join(".postgresql").join(name))
    };
    let cert = match &settings.cert {
        Some(cert) => cert.clone(),
        None => match default("postgresql.crt").filter(|p| p.exists()) {
            Some(cert) => cert,
            None => return Ok(None),
        },
    };
    let key = match &settings.key {
        Some(key) => key.clone(),
        None => default("postgresql.key")
            .filter(|p| p.exists())
            .ok_or_else(|| TlsError::KeyMissing(cert.clone()))?,
    };
    let chain = read_certs("sslcert", &cert)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| pem_error("sslkey", &key, e))?;
    Ok(Some((chain, key)))
}

fn pem_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Turns a rustls handshake failure into a message that says what to change.
fn explain_handshake_error(error: &io::Error, host: &str, mode: SslMode) -> String {
    let rustls_error = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let Some(rustls::Error::InvalidCertificate(cert_error)) = rustls_error else {
        return error.to_string();
    };
    match cert_error {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the server certificate is not signed by a CA in sslrootcert (sslmode={mode}): {cert_error}"
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => format!(
                    "the server certificate has no IP address SAN for {ip} (sslmode=verify-full): {cert_error}; connect by the host name in the certificate or use sslmode=verify-ca"
                ),
                Err(_) => format!(
                    "the server certificate does not match the host name \"{host}\" (sslmode=verify-full): {cert_error}; connect by a name in the certificate or use sslmode=verify-ca"
                ),
            }
        }
        other => format!("invalid server certificate: {other}"),
    }
}

#[cfg(test)]
mod tests;
