//! Generating server configuration, picking ports and quoting helpers.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use super::{ClusterError, ClusterOptions};

/// Marks the start of the block we append to `postgresql.conf`.
pub(crate) const CONF_MARKER: &str = "# ---- added by pgmorph::cluster ----";

/// Asks the kernel for a currently free loopback port. Another process may
/// grab it before the server binds it; callers retry in that case.
pub(crate) fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| ClusterError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| ClusterError::io("reading the probe listener's address", e))?
        .port();
    Ok(port)
}

/// The settings block appended to initdb's `postgresql.conf`.
pub(crate) fn render(options: &ClusterOptions, port: u16, socket_dir: &Path) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("listen_addresses", quote("127.0.0.1")),
        ("port", port.to_string()),
        (
            "unix_socket_directories",
            quote(&socket_dir.to_string_lossy()),
        ),
        ("max_connections", "100".into()),
        ("shared_buffers", quote("128MB")),
        ("logging_collector", "off".into()),
    ];
    if options.logical {
        lines.push(("wal_level", quote("logical")));
        lines.push(("max_replication_slots", "20".into()));
        lines.push(("max_wal_senders", "20".into()));
    }
    if !options.durable {
        lines.push(("fsync", "off".into()));
        lines.push(("synchronous_commit", "off".into()));
        lines.push(("full_page_writes", "off".into()));
    }
    for (name, value) in &options.settings {
        lines.push((name.as_str(), quote_setting(value)));
    }
    let mut text = format!("\n{CONF_MARKER}\n");
    for (name, value) in lines {
        text.push_str(&format!("{name} = {value}\n"));
    }
    text
}

/// Single-quotes a configuration value unless it already is quoted.
fn quote_setting(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        value.to_owned()
    } else {
        quote(value)
    }
}

/// Single-quotes a configuration value or SQL literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Double-quotes an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether initdb's `pg_hba.conf` allows TCP replication connections from 127.0.0.1.
pub(crate) fn hba_allows_loopback_replication(hba: &str) -> bool {
    hba.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(
            fields.as_slice(),
            ["host", "replication", "all", "127.0.0.1/32", ..]
        )
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_logical_fast_settings() {
        let options = ClusterOptions::source().with_setting("work_mem", "8MB");
        let text = render(&options, 5433, Path::new("/tmp/x'y"));
        assert!(text.contains("port = 5433\n"));
        assert!(text.contains("unix_socket_directories = '/tmp/x''y'\n"));
        assert!(text.contains("wal_level = 'logical'\n"));
        assert!(text.contains("fsync = off\n"));
        assert!(text.ends_with("work_mem = '8MB'\n"));
        let durable = render(
            &ClusterOptions {
                durable: true,
                ..ClusterOptions::default()
            },
            1,
            Path::new("/t"),
        );
        assert!(!durable.contains("fsync"));
        assert!(!durable.contains("wal_level"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_setting("'replica'"), "'replica'");
        assert_eq!(quote_setting("replica"), "'replica'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(percent_encode("p@ss w/rd"), "p%40ss%20w%2Frd");
    }

    #[test]
    fn detects_replication_hba_line() {
        let hba = "# host replication all 127.0.0.1/32 trust\nhost    replication     all             127.0.0.1/32            trust\n";
        assert!(hba_allows_loopback_replication(hba));
        assert!(!hba_allows_loopback_replication(
            "# host replication all 127.0.0.1/32 trust\n"
        ));
    }
}
