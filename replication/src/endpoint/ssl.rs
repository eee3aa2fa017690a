//! The TLS settings of an endpoint: libpq's sslmode, root certificates, client
//! certificate and SNI.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::{invalid, EndpointError};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS if the server rejects the plaintext login (SQLSTATE 28000).
    Allow,
    /// TLS if the server accepts the SSLRequest, else plaintext (libpq's default).
    #[default]
    Prefer,
    /// TLS; the certificate is verified only when `sslrootcert` is given (then as verify-ca).
    Require,
    /// TLS; the chain must lead to `sslrootcert`; the host name is not checked.
    VerifyCa,
    /// TLS; chain and host name (or IP address) are verified.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is an error.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<SslMode, EndpointError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(invalid(
                    "sslmode",
                    s,
                    "one of disable, allow, prefer, require, verify-ca, verify-full",
                ))
            }
        })
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file with one or more CA certificates.
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`).
    System,
}

/// The TLS part of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// libpq's sslmode (default prefer).
    pub mode: SslMode,
    /// `sslrootcert`; for verify-* `~/.postgresql/root.crt` is used when unset.
    pub root_cert: Option<RootCert>,
    /// `sslcert`: client certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// `sslkey`: client private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// `sslsni`: send SNI for host names (never for IP addresses). Default true.
    pub sni: bool,
    /// The home directory for `~/.postgresql/...` defaults (from `HOME`).
    pub home: Option<PathBuf>,
}
