//! `[metrics]` and `[log]`: how a running connector is observed.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[metrics]`: serve Prometheus metrics and a health check while `pgmorph run` runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `listen = "127.0.0.1:9187"`: the IP address and port of `/metrics` and `/health`.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
}

fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "metrics.listen {text:?} must be an IP address and port, like \"127.0.0.1:9187\""
        ))
    })
}

/// `[log]`: the log written to standard error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `format = "text" | "json"`: one line per event, as text (colored only on a terminal) or
    /// as a JSON object; `--log-format` overrides it.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with `timestamp`, `level`, `target`, `message` and the
    /// event's fields.
    Json,
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use std::path::Path;

    const BASE: &str = "name = \"c\"\n[source]\nurl = \"postgres://u@h/d\"\n\
                        [destination]\nurl = \"postgres://u@h/e\"\n";

    #[test]
    fn metrics_are_off_unless_configured_and_the_address_is_checked() {
        let c = Config::parse(BASE, Path::new("c.toml")).unwrap();
        assert!(c.metrics.is_none());
        assert_eq!(c.log.format, LogFormat::Text);
        let text =
            format!("{BASE}[metrics]\nlisten = \"127.0.0.1:9187\"\n[log]\nformat = \"json\"\n");
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(c.metrics.unwrap().listen.port(), 9187);
        assert_eq!(c.log.format, LogFormat::Json);
        let bad = format!("{BASE}[metrics]\nlisten = \"9187\"\n");
        let err = Config::parse(&bad, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must be an IP address and port") && err.contains("line 7"),
            "{err}"
        );
    }
}
