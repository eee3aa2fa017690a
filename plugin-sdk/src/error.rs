//! The error a plugin returns: its kind tells the operator what to fix.

use std::fmt;

/// A plugin failure, crossing to the host as the WIT `plugin-error` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The plugin's configuration is wrong.
    InvalidConfig(String),
    /// The table or value is something the plugin cannot handle.
    Unsupported(String),
    /// Any other failure.
    Failed(String),
}

impl Error {
    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::InvalidConfig(message.into())
    }

    /// An unsupported table or value.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::Unsupported(message.into())
    }

    /// Any other failure.
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(message.into())
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidConfig(m) | Error::Unsupported(m) | Error::Failed(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(m) => write!(f, "invalid plugin config: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
