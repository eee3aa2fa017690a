//! Dropping root privileges: PostgreSQL refuses to run as root, so when we are
//! root the server tools run as the unprivileged user `nobody`.

use std::os::unix::fs::MetadataExt;

/// Numeric user and group to run the PostgreSQL tools as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Used when `/etc/passwd` has no `nobody` entry.
const NOBODY_FALLBACK: RunAs = RunAs {
    uid: 65534,
    gid: 65534,
};

impl RunAs {
    /// Returns the user to switch to, or `None` when we are not root.
    pub(crate) fn detect() -> Option<RunAs> {
        (effective_uid() == Some(0)).then(nobody)
    }
}

/// Reads the effective uid from `/proc/self/status`, falling back to the
/// owner of `/proc/self`.
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_status_euid(&status))
        .or_else(|| std::fs::metadata("/proc/self").ok().map(|m| m.uid()))
}

/// `Uid:` lists real, effective, saved and filesystem uids.
fn parse_status_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn nobody() -> RunAs {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| parse_passwd(&passwd, "nobody"))
        .unwrap_or(NOBODY_FALLBACK)
}

fn parse_passwd(passwd: &str, user: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        Some(RunAs {
            uid: fields.next()?.parse().ok()?,
            gid: fields.next()?.parse().ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_uid() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(parse_status_euid(status), Some(0));
    }

    #[test]
    fn parses_passwd_entry() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65533:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(
            parse_passwd(passwd, "nobody"),
            Some(RunAs {
                uid: 65534,
                gid: 65533
            })
        );
        assert_eq!(parse_passwd(passwd, "postgres"), None);
    }
}
