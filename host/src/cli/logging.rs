//! The log on standard error: filter from `PGMORPH_LOG` (else `RUST_LOG`), text or JSON lines,
//! colors only on a terminal.

use std::io::IsTerminal;
use std::path::Path;

use pgmorph::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// What is logged when neither `PGMORPH_LOG` nor `RUST_LOG` is set.
const DEFAULT_FILTER: &str = "info,tokio_postgres=warn,pgmorph_replication=warn";

/// Installs the subscriber. `flag` (`--log-format`) wins over `[log] format` of the config
/// file, if the command has one and it can be read.
pub fn init(flag: Option<LogFormat>, config: Option<&Path>) -> LogFormat {
    let format = flag
        .or_else(|| config.and_then(format_in_config))
        .unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(colors());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    format
}

/// `PGMORPH_LOG` first, then `RUST_LOG`, then [`DEFAULT_FILTER`].
fn filter() -> EnvFilter {
    EnvFilter::try_from_env("PGMORPH_LOG")
        .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| DEFAULT_FILTER.into())
}

/// ANSI colors only when standard error is a terminal and `NO_COLOR` is not set.
fn colors() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `[log] format` of a config file; `None` when it is not set or the file cannot be read (the
/// command reports that itself).
fn format_in_config(path: &Path) -> Option<LogFormat> {
    #[derive(serde::Deserialize)]
    struct LogOnly {
        log: Option<LogConfig>,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let only: LogOnly = toml::from_str(&text).ok()?;
    only.log.map(|l| l.format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_format_from_the_log_table_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "name = \"c\"\n[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(format_in_config(&path), Some(LogFormat::Json));
        std::fs::write(&path, "name = \"c\"\n[source]\nurl = \"x\"\n").unwrap();
        assert_eq!(format_in_config(&path), None);
        assert_eq!(format_in_config(&dir.path().join("missing.toml")), None);
    }
}
