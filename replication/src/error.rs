//! The crate's error type and the server's structured `ErrorResponse`.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::endpoint::{EndpointError, SslMode};
use crate::tls::TlsError;

/// SQLSTATE `28000` invalid_authorization_specification (e.g. no pg_hba.conf entry).
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
/// SQLSTATE `28P01` invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE `55006` object_in_use (e.g. a replication slot active for another PID).
pub const OBJECT_IN_USE: &str = "55006";
/// SQLSTATE `42704` undefined_object (e.g. a replication slot that does not exist).
pub const UNDEFINED_OBJECT: &str = "42704";

/// Everything that can go wrong while connecting, querying or replicating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection parameters are invalid.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The TLS configuration could not be built (certificate files and the like).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No TCP or Unix socket connection could be opened.
    #[error("could not connect to {endpoint}: {source}")]
    Connect {
        /// `user@host:port/db` of the endpoint.
        endpoint: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// `connect_timeout` passed before the session was ready.
    #[error("connecting to {endpoint} timed out after {after:?}")]
    Timeout {
        /// `user@host:port/db` of the endpoint.
        endpoint: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The server answered 'N' to the SSLRequest although the sslmode needs TLS.
    #[error("the server at {endpoint} does not support TLS but sslmode={mode} requires it; enable ssl on the server or use sslmode=prefer")]
    TlsRefused {
        /// `user@host:port/db` of the endpoint.
        endpoint: String,
        /// The sslmode that required TLS.
        mode: SslMode,
    },
    /// The TLS handshake failed (certificate verification errors land here).
    #[error("TLS handshake with {endpoint} failed: {reason}")]
    TlsHandshake {
        /// `user@host:port/db` of the endpoint.
        endpoint: String,
        /// What went wrong, e.g. which verification failed and what to change.
        reason: String,
    },
    /// The server needs a password and none was found.
    #[error("the server asks {endpoint} for a password but none was given (set password, PGPASSWORD or a .pgpass entry)")]
    PasswordMissing {
        /// `user@host:port/db` of the endpoint.
        endpoint: String,
    },
    /// The server asked for an authentication method this crate does not implement.
    #[error("the server asks for the unsupported authentication method {0}")]
    UnsupportedAuth(String),
    /// The server sent an `ErrorResponse`.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Reading or writing the socket failed.
    #[error("I/O error on the connection: {0}")]
    Io(#[from] io::Error),
    /// The server sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The server's version lacks a feature the caller asked for.
    #[error("PostgreSQL {server_version_num} does not support {feature} (needs {needs} or later)")]
    Unsupported {
        /// What was asked for, as the command spells it.
        feature: &'static str,
        /// The server's `server_version_num`.
        server_version_num: u32,
        /// The first major version that has it.
        needs: u32,
    },
}

impl Error {
    /// The server's error, if this is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }

    /// The SQLSTATE code, if the server sent one.
    pub fn code(&self) -> Option<&str> {
        self.server_error().map(ServerError::code)
    }

    /// The connection settings or files must change before a connection can work: the
    /// endpoint, the TLS configuration or verification, a missing password, an authentication
    /// method this crate does not implement. Retrying does not help.
    pub fn needs_settings_change(&self) -> bool {
        matches!(
            self,
            Error::Endpoint(_)
                | Error::Tls(_)
                | Error::TlsRefused { .. }
                | Error::TlsHandshake { .. }
                | Error::PasswordMissing { .. }
                | Error::UnsupportedAuth(_)
                | Error::Unsupported { .. }
        )
    }

    /// Authentication failed (SQLSTATE 28P01 or 28000).
    pub fn is_auth_failure(&self) -> bool {
        self.server_error()
            .is_some_and(ServerError::is_auth_failure)
    }

    /// The replication slot is active for another process (SQLSTATE 55006).
    pub fn slot_in_use(&self) -> bool {
        self.server_error().is_some_and(ServerError::slot_in_use)
    }

    /// The named object (e.g. the slot) does not exist (SQLSTATE 42704).
    pub fn undefined_object(&self) -> bool {
        self.server_error()
            .is_some_and(ServerError::undefined_object)
    }
}

/// An `ErrorResponse` (or `NoticeResponse`) from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, `PANIC` (or `WARNING`, `NOTICE`... for notices), untranslated.
    pub severity: String,
    /// The SQLSTATE code.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The optional detail.
    pub detail: Option<String>,
    /// The optional hint.
    pub hint: Option<String>,
}

impl ServerError {
    /// Builds the error from the fields of an `ErrorResponse`/`NoticeResponse`.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (u8, &'a str)>) -> ServerError {
        let mut error = ServerError {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
        };
        let mut localized = String::new();
        for (kind, value) in fields {
            match kind {
                b'V' => error.severity = value.to_owned(),
                b'S' => localized = value.to_owned(),
                b'C' => error.code = value.to_owned(),
                b'M' => error.message = value.to_owned(),
                b'D' => error.detail = Some(value.to_owned()),
                b'H' => error.hint = Some(value.to_owned()),
                _ => {}
            }
        }
        if error.severity.is_empty() {
            error.severity = localized;
        }
        error
    }

    /// The SQLSTATE code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Authentication failed: 28P01 invalid_password or 28000 invalid_authorization_specification.
    pub fn is_auth_failure(&self) -> bool {
        self.code == INVALID_PASSWORD || self.code == INVALID_AUTHORIZATION_SPECIFICATION
    }

    /// SQLSTATE 55006 object_in_use, e.g. `replication slot "s" is active for PID n`.
    pub fn slot_in_use(&self) -> bool {
        self.code == OBJECT_IN_USE
    }

    /// SQLSTATE 42704 undefined_object, e.g. `replication slot "s" does not exist`.
    pub fn undefined_object(&self) -> bool {
        self.code == UNDEFINED_OBJECT
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_sqlstate_only() {
        let fields = [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "28P01"),
            (b'M', "password authentication failed for user \"x\""),
        ];
        let error = Error::Server(ServerError::from_fields(fields));
        assert!(error.is_auth_failure());
        assert!(!error.slot_in_use());
        assert_eq!(error.code(), Some("28P01"));
        assert_eq!(
            error.to_string(),
            "FATAL: password authentication failed for user \"x\" (SQLSTATE 28P01)"
        );
        let in_use = ServerError::from_fields([(b'C', "55006"), (b'M', "is active for PID 1")]);
        assert!(in_use.slot_in_use() && !in_use.is_auth_failure());
        let missing = ServerError::from_fields([(b'C', "42704"), (b'D', "d"), (b'H', "h")]);
        assert!(missing.undefined_object());
        assert_eq!(
            missing.to_string(),
            ":  (SQLSTATE 42704); detail: d; hint: h"
        );
    }
}
