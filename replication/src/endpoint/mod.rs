//! Connection parameters: one PostgreSQL server, user and database, parsed from a
//! `postgres://` URL or a libpq `key=value` string with libpq's environment fallbacks.

mod conninfo;
mod pgpass;
mod ssl;
mod url;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use pgpass::PasswordSource;
pub use ssl::{RootCert, SslMode, TlsSettings};

/// Looks up an environment variable; injectable so tests need not touch the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Endpoint::parse_with_env`] and friends.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The parameter names accepted in URLs and key=value strings.
pub const KNOWN_PARAMETERS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "application_name",
    "options",
    "connect_timeout",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslsni",
    "passfile",
];

/// Parameters and the environment variables that supply them when a string leaves them out.
const ENV_FALLBACKS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("user", "PGUSER"),
    ("dbname", "PGDATABASE"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslsni", "PGSSLSNI"),
    ("passfile", "PGPASSFILE"),
];

/// Everything wrong with a connection string or the password sources.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A key that libpq (or this crate) does not know.
    #[error("unknown parameter \"{0}\"")]
    UnknownParameter(String),
    /// A `key` without `=value` in a key=value string.
    #[error("missing \"=\" after \"{0}\" in the connection string")]
    MissingEquals(String),
    /// A quoted value without its closing quote.
    #[error("unterminated quoted value for \"{0}\" in the connection string")]
    UnterminatedQuote(String),
    /// A value that does not fit its parameter, e.g. `port "x" is not a number`.
    #[error("{name} \"{value}\" is not {expected}")]
    InvalidValue {
        /// The parameter.
        name: &'static str,
        /// The offending value.
        value: String,
        /// What it should have been.
        expected: &'static str,
    },
    /// A malformed part of a URL.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// Several comma-separated hosts (libpq failover) are not supported.
    #[error("host \"{0}\" names several hosts, which is not supported")]
    MultipleHosts(String),
    /// No user name in the string, PGUSER or USER.
    #[error("no user name given: set user in the connection string or PGUSER")]
    NoUser,
    /// The explicit password file could not be read.
    #[error("could not read the password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Warning: `.pgpass` is readable by group or others and was ignored, as libpq does.
    #[error("password file {path} has group or world access (mode {mode:04o}) and is ignored; permissions should be u=rw (0600) or less")]
    PgpassInsecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// One PostgreSQL server, role and database. The password never appears in Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name, IP address, or a Unix socket directory (starting with '/'). Default:
    /// PGHOST, else `localhost` (libpq would use its compiled-in socket directory).
    pub host: String,
    /// `hostaddr`: connect to this address instead of resolving `host` (which still serves TLS).
    pub hostaddr: Option<IpAddr>,
    /// TCP port, or the Unix socket's number (`.s.PGSQL.<port>`).
    pub port: u16,
    /// Role name.
    pub user: String,
    /// Database name (defaults to the user name).
    pub dbname: String,
    password: Option<String>,
    /// `application_name` sent in the startup packet.
    pub application_name: Option<String>,
    /// `options` (command-line options for the backend) sent in the startup packet.
    pub options: Option<String>,
    /// `connect_timeout`: limit for connecting and authenticating.
    pub connect_timeout: Option<Duration>,
    /// `passfile` (or PGPASSFILE): the `.pgpass` to read.
    pub passfile: Option<PathBuf>,
    /// TLS settings.
    pub tls: TlsSettings,
}

impl Endpoint {
    /// Parses a URL or key=value string, with fallbacks from the process environment.
    pub fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse_with_env(s, &process_env)
    }

    /// Parses a URL or key=value string, taking fallbacks (PGHOST, ...) from `env`.
    pub fn parse_with_env(s: &str, env: Env<'_>) -> Result<Endpoint, EndpointError> {
        let trimmed = s.trim_start();
        let pairs = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            url::parse(trimmed)?
        } else {
            conninfo::parse(s)?
        };
        let mut given: Vec<(&'static str, String)> = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let Some(known) = KNOWN_PARAMETERS.iter().find(|k| **k == key) else {
                return Err(EndpointError::UnknownParameter(key));
            };
            given.retain(|(k, _)| k != known);
            given.push((known, value));
        }
        let lookup = |name: &str| -> Option<String> {
            let from_string = given
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone());
            let from_env = || {
                let var = ENV_FALLBACKS.iter().find(|(k, _)| *k == name)?.1;
                env(var)
            };
            from_string.or_else(from_env).filter(|v| !v.is_empty())
        };
        Endpoint::from_lookup(&lookup, env)
    }

    fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        env: Env<'_>,
    ) -> Result<Endpoint, EndpointError> {
        let host = get("host").unwrap_or_else(|| "localhost".to_owned());
        if host.contains(',') {
            return Err(EndpointError::MultipleHosts(host));
        }
        let user = get("user")
            .or_else(|| env("USER"))
            .ok_or(EndpointError::NoUser)?;
        let home = env("HOME").map(PathBuf::from);
        Ok(Endpoint {
            hostaddr: get("hostaddr")
                .map(|v| parse_value(&v, "hostaddr", "an IP address"))
                .transpose()?,
            port: get("port")
                .map(|v| parse_value(&v, "port", "a number"))
                .transpose()?
                .unwrap_or(5432),
            dbname: get("dbname").unwrap_or_else(|| user.clone()),
            password: get("password"),
            application_name: get("application_name"),
            options: get("options"),
            connect_timeout: get("connect_timeout")
                .map(|v| parse_timeout(&v))
                .transpose()?
                .flatten(),
            passfile: get("passfile").map(PathBuf::from),
            tls: TlsSettings {
                mode: get("sslmode")
                    .map(|v| v.parse())
                    .transpose()?
                    .unwrap_or_default(),
                root_cert: get("sslrootcert").map(|v| match v.as_str() {
                    "system" => RootCert::System,
                    _ => RootCert::File(PathBuf::from(v)),
                }),
                cert: get("sslcert").map(PathBuf::from),
                key: get("sslkey").map(PathBuf::from),
                sni: get("sslsni")
                    .map(|v| parse_sni(&v))
                    .transpose()?
                    .unwrap_or(true),
                home,
            },
            host,
            user,
        })
    }

    /// Finds the password libpq's way when the string gave none: the first line of
    /// `password_file`, else PGPASSWORD, else `.pgpass` (`passfile`, PGPASSFILE or ~/.pgpass).
    /// Non-fatal problems (an insecure `.pgpass`) come back in the second element.
    pub fn resolve_password(
        &mut self,
        password_file: Option<&Path>,
        env: Env<'_>,
    ) -> Result<(PasswordSource, Vec<EndpointError>), EndpointError> {
        pgpass::resolve(self, password_file, env)
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Sets or clears the password.
    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password;
    }

    /// Whether `host` names a Unix socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/') && self.hostaddr.is_none()
    }

    /// The socket file for Unix socket endpoints: `<dir>/.s.PGSQL.<port>`.
    pub fn socket_path(&self) -> PathBuf {
        Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port))
    }

    /// `user@host:port/db`, for messages (no password).
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("application_name", &self.application_name)
            .field("options", &self.options)
            .field("connect_timeout", &self.connect_timeout)
            .field("passfile", &self.passfile)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> EndpointError {
    EndpointError::InvalidValue {
        name,
        value: value.to_owned(),
        expected,
    }
}

fn parse_value<T: FromStr>(
    value: &str,
    name: &'static str,
    expected: &'static str,
) -> Result<T, EndpointError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, expected))
}

/// libpq: zero or negative means no timeout; values below 2 s are raised to 2 s.
fn parse_timeout(value: &str) -> Result<Option<Duration>, EndpointError> {
    let seconds: i64 = parse_value(value, "connect_timeout", "a number of seconds")?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds.max(2).unsigned_abs())))
}

fn parse_sni(value: &str) -> Result<bool, EndpointError> {
    match value {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(invalid("sslsni", value, "0 or 1")),
    }
}

#[cfg(test)]
mod tests;
