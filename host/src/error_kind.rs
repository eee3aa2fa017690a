//! What an operator should do about an error: every error that stops a connector has a kind,
//! used for the exit code, the state row (`pgmorph status`) and, for retryable ones, retries.
//! Server errors are classified by their SQLSTATE code, never by their message text.

use std::error::Error;

/// What to do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A passing condition (a connection lost, a server restarting, a lock held): start again
    /// later, nothing to fix.
    RetryLater,
    /// The configuration is wrong (a key, a URL, a password).
    FixConfig,
    /// The source or destination server needs a change (settings, privileges, a table, a
    /// slot), or refused the data.
    FixServer,
    /// A plugin failed or mapped something impossible.
    FixPlugin,
    /// pgmorph itself misbehaved: report it.
    Bug,
}

impl ErrorKind {
    /// The process exit code (`sysexits.h`): 75 retry later, 78 fix config, 69 fix server, 65
    /// fix plugin, 70 bug.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::RetryLater => 75,
            ErrorKind::FixConfig => 78,
            ErrorKind::FixServer => 69,
            ErrorKind::FixPlugin => 65,
            ErrorKind::Bug => 70,
        }
    }

    /// The kind in words, as `status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RetryLater => "retry later",
            ErrorKind::FixConfig => "fix config",
            ErrorKind::FixServer => "fix source or destination",
            ErrorKind::FixPlugin => "fix plugin",
            ErrorKind::Bug => "bug",
        }
    }

    /// The kind of a server error with this SQLSTATE.
    pub fn of_sqlstate(code: &str) -> Self {
        match code {
            // Admin or crash shutdown, cannot connect now, object in use (a slot held by an
            // ending session), serialization failure and deadlock.
            "57P01" | "57P02" | "57P03" | "55006" | "40001" | "40P01" => ErrorKind::RetryLater,
            _ => match code.get(..2) {
                // Connection exception, insufficient resources, operator intervention.
                Some("08" | "53" | "57") => ErrorKind::RetryLater,
                // Invalid authorization, invalid catalog name (no such database).
                Some("28" | "3D") => ErrorKind::FixConfig,
                // Internal error.
                Some("XX") => ErrorKind::Bug,
                _ => ErrorKind::FixServer,
            },
        }
    }

    /// The kind of a driver error: its SQLSTATE, or a lost connection (retry later).
    pub fn of_postgres(e: &tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code) => Self::of_sqlstate(code.code()),
            None => ErrorKind::RetryLater,
        }
    }

    /// The kind of the first driver error among `e` and its causes, if any.
    pub fn of_cause(e: &(dyn Error + 'static)) -> Option<Self> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(pg) = err.downcast_ref::<tokio_postgres::Error>() {
                return Some(Self::of_postgres(pg));
            }
            next = err.source();
        }
        None
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_by_code() {
        let kind = ErrorKind::of_sqlstate;
        assert_eq!(kind("08006"), ErrorKind::RetryLater, "connection failure");
        assert_eq!(kind("57P01"), ErrorKind::RetryLater, "admin shutdown");
        assert_eq!(kind("55006"), ErrorKind::RetryLater, "slot in use");
        assert_eq!(kind("53300"), ErrorKind::RetryLater, "too many connections");
        assert_eq!(kind("28P01"), ErrorKind::FixConfig, "wrong password");
        assert_eq!(kind("3D000"), ErrorKind::FixConfig, "no such database");
        assert_eq!(
            kind("42501"),
            ErrorKind::FixServer,
            "insufficient privilege"
        );
        assert_eq!(kind("23505"), ErrorKind::FixServer, "unique violation");
        assert_eq!(
            kind("55000"),
            ErrorKind::FixServer,
            "object not in prerequisite state"
        );
        assert_eq!(kind("XX000"), ErrorKind::Bug);
    }

    #[test]
    fn exit_codes_differ_per_kind() {
        let kinds = [
            ErrorKind::RetryLater,
            ErrorKind::FixConfig,
            ErrorKind::FixServer,
            ErrorKind::FixPlugin,
            ErrorKind::Bug,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0) && !codes.contains(&1));
    }

    #[test]
    fn an_io_error_without_a_driver_cause_has_no_kind() {
        let e = std::io::Error::other("disk full");
        assert_eq!(ErrorKind::of_cause(&e), None);
    }
}
