//! Password lookup: explicit password file, PGPASSWORD, and libpq's `.pgpass`
//! (`host:port:db:user:password`, `*` wildcards, `\:` and `\\` escapes).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{Endpoint, EndpointError, Env};

/// Where [`Endpoint::resolve_password`] found the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The connection string carried it.
    ConnectionString,
    /// The first line of the explicit password file.
    PasswordFile(PathBuf),
    /// The PGPASSWORD environment variable.
    Environment,
    /// A matching `.pgpass` line in this file.
    Pgpass(PathBuf),
    /// Nowhere; the server may not need one.
    Absent,
}

pub(super) fn resolve(
    endpoint: &mut Endpoint,
    password_file: Option<&Path>,
    env: Env<'_>,
) -> Result<(PasswordSource, Vec<EndpointError>), EndpointError> {
    if endpoint.password.is_some() {
        return Ok((PasswordSource::ConnectionString, Vec::new()));
    }
    if let Some(path) = password_file {
        let text = std::fs::read_to_string(path).map_err(|source| EndpointError::PasswordFile {
            path: path.to_owned(),
            source,
        })?;
        let first = text.lines().next().unwrap_or_default();
        endpoint.password = Some(first.to_owned());
        return Ok((PasswordSource::PasswordFile(path.to_owned()), Vec::new()));
    }
    if let Some(password) = env("PGPASSWORD").filter(|p| !p.is_empty()) {
        endpoint.password = Some(password);
        return Ok((PasswordSource::Environment, Vec::new()));
    }
    let Some(path) = pgpass_path(endpoint) else {
        return Ok((PasswordSource::Absent, Vec::new()));
    };
    match read_pgpass(&path)? {
        PgpassFile::Missing => Ok((PasswordSource::Absent, Vec::new())),
        PgpassFile::Insecure(warning) => {
            tracing::warn!(%warning, "ignoring the password file");
            Ok((PasswordSource::Absent, vec![warning]))
        }
        PgpassFile::Text(text) => Ok(match find_password(&text, endpoint) {
            Some(password) => {
                endpoint.password = Some(password);
                (PasswordSource::Pgpass(path), Vec::new())
            }
            None => (PasswordSource::Absent, Vec::new()),
        }),
    }
}

fn pgpass_path(endpoint: &Endpoint) -> Option<PathBuf> {
    endpoint
        .passfile
        .clone()
        .or_else(|| endpoint.tls.home.as_ref().map(|home| home.join(".pgpass")))
}

enum PgpassFile {
    Missing,
    Insecure(EndpointError),
    Text(String),
}

/// Reads `.pgpass`; like libpq, a missing, non-regular, or group/world-accessible file is skipped.
fn read_pgpass(path: &Path) -> Result<PgpassFile, EndpointError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(PgpassFile::Missing);
    };
    if !meta.is_file() {
        return Ok(PgpassFile::Missing);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Ok(PgpassFile::Insecure(EndpointError::PgpassInsecure {
            path: path.to_owned(),
            mode,
        }));
    }
    std::fs::read_to_string(path)
        .map(PgpassFile::Text)
        .map_err(|source| EndpointError::PasswordFile {
            path: path.to_owned(),
            source,
        })
}

/// The password of the first line matching the endpoint. Unix socket hosts match `localhost`.
pub(crate) fn find_password(text: &str, endpoint: &Endpoint) -> Option<String> {
    let host = if endpoint.host.starts_with('/') {
        "localhost"
    } else {
        endpoint.host.as_str()
    };
    let port = endpoint.port.to_string();
    let wanted = [
        host,
        port.as_str(),
        endpoint.dbname.as_str(),
        endpoint.user.as_str(),
    ];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(split_line)
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|mut fields| fields.swap_remove(4))
}

/// Splits one line into exactly five unescaped fields (the password keeps any further colons).
fn split_line(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.trim_end_matches('\r').chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}
