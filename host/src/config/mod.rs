//! The connector configuration file (TOML): parsing, defaults and validation.
//!
//! ```toml
//! name = "pgconn"
//! [source]
//! url = "postgres://user@127.0.0.1:5432/postgres"
//! schema = "public"
//! [destination]
//! url = "postgres://user@127.0.0.1:5433/postgres"
//! ```

mod connection;
mod reconnect;
mod telemetry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use connection::{ConnectionError, ConnectionSettings, ReadBatching};
pub use reconnect::ReconnectConfig;
pub use telemetry::{LogConfig, LogFormat, MetricsConfig};

use crate::model::TableName;

/// The config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown, or a value has the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key named.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A connector: one source database replicated into one destination database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `name = "pgconn"`: the connector name, used for the slot (`pgmorph_<name>`), the
    /// publication (`pgmorph_<name>`) and the state rows. Lower-case letters, digits and `_`.
    pub name: String,
    /// `[source]`: the database to replicate.
    pub source: SourceConfig,
    /// `[destination]`: the database to replicate into.
    pub destination: DestinationConfig,
    /// `plugin_dir = "plugins"`: directory of `.wasm` plugins, applied in file-name order.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// `[plugins.<file stem>]`: per-plugin settings.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
    /// `[snapshot]`: initial copy settings.
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// `[apply]`: how changes are applied on the destination.
    #[serde(default)]
    pub apply: ApplyConfig,
    /// `[reconnect]`: retries after a lost connection.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// `[metrics]`: Prometheus metrics and health check of `pgmorph run` (absent: off).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// `[log]`: the log's format.
    #[serde(default)]
    pub log: LogConfig,
}

/// `[source]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `url = "postgres://user@host:5432/db"`; the password comes from the URL, `password_file`
    /// or `PGPASSWORD`.
    pub url: String,
    /// `password_file = "/run/secrets/pg"`: a file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `schema = "public"`: replicate every table of this schema (ignored when `tables` is set).
    #[serde(default)]
    pub schema: Option<String>,
    /// `tables = ["public.orders"]`: replicate exactly these tables.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// `snapshot_tables = ["public.customers"]`: the tables an `always` start re-copies.
    #[serde(default)]
    pub snapshot_tables: Option<Vec<String>>,
    /// `max_retained_wal_mb = 1024`: warn when the slot keeps more WAL than this on the source.
    #[serde(default = "default_retained")]
    pub max_retained_wal_mb: u64,
    /// `read_batching = "auto" | "on" | "off"`: read the replication stream in batches, so the
    /// source's walsender sends many changes per packet (`auto`: when the source is on this
    /// host, reached over loopback).
    #[serde(default)]
    pub read_batching: ReadBatching,
    /// `partitions = "root" | "leaf"`: a partitioned table replicates as one destination
    /// table named after its root (`root`, the default), or each leaf partition as a table of
    /// its own (`leaf`).
    #[serde(default)]
    pub partitions: Partitions,
    /// `stream_large_transactions = true`: a transaction larger than the source's
    /// `logical_decoding_work_mem` is sent while it runs and applied on a destination
    /// connection of its own, committed when its commit arrives (false: sent after its commit).
    #[serde(default = "default_true")]
    pub stream_large_transactions: bool,
    /// `binary_values = true`: the source sends values in their binary form (pgoutput
    /// `binary`, PostgreSQL 14+), which costs the source less to produce and the destination
    /// less to read. Used while every table that changes has no row plugins and keeps its
    /// source column types (a change of another table starts the stream again with text
    /// values); false: always text.
    #[serde(default = "default_true")]
    pub binary_values: bool,
    /// `failover_slot = true`: create the replication slot with `FAILOVER` (PostgreSQL 17+),
    /// so a physical standby with `sync_replication_slots = on` keeps a copy of it and a
    /// promoted standby can continue the stream; an existing slot is altered to match. On an
    /// older source the start is refused.
    #[serde(default)]
    pub failover_slot: bool,
    /// `[source.row_filters]` `"public.orders" = "amount > 100"`: publish (and copy) only the
    /// rows of a table for which the SQL condition is true (PostgreSQL 15+ publication row
    /// filters). The condition may use only the table's replica identity columns (or any
    /// column under `REPLICA IDENTITY FULL`).
    #[serde(default)]
    pub row_filters: BTreeMap<String, String>,
}

/// By source table, the row filter `[source.row_filters]` sets.
pub type RowFilters = BTreeMap<TableName, String>;

/// How partitioned source tables replicate (`source.partitions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitions {
    /// One destination table per partitioned table; changes are published under the root.
    #[default]
    Root,
    /// One destination table per leaf partition.
    Leaf,
}

fn default_true() -> bool {
    true
}

fn default_retained() -> u64 {
    1024
}

/// `[destination]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// `url = "postgres://user@host:5433/db"`.
    pub url: String,
    /// `password_file = "/run/secrets/pg"`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `schema = "postgres"`: where tables land; default: the source database's name.
    #[serde(default)]
    pub schema: Option<String>,
    /// `synchronous_commit = false`: commit applied transactions with `synchronous_commit=off`.
    #[serde(default)]
    pub synchronous_commit_off: bool,
    /// `on_apply_error = "stop" | "dead_letter"`: what happens when the destination refuses a
    /// change (a constraint, a trigger, a value its type rejects). `stop` (default): the
    /// connector stops with the table, key, constraint and LSN named, acknowledging nothing
    /// from that transaction on. `dead_letter`: the refused row goes to `pgmorph.dead_letters`
    /// in the same destination transaction and the others are applied.
    #[serde(default)]
    pub on_apply_error: OnApplyError,
    /// `on_ddl_error = "stop" | "skip"`: what happens to a source DDL command the destination
    /// refuses or pgmorph cannot follow. `stop` (default): the connector stops with the
    /// statement and the reason, acknowledging nothing from that transaction on. `skip`: the
    /// destination table stays as it was, the command is recorded in `pgmorph.ddl_history`
    /// with `skipped` and its error, and streaming goes on (rows that no longer fit the
    /// destination table then follow `on_apply_error`).
    #[serde(default)]
    pub on_ddl_error: OnDdlError,
}

/// What happens to a source DDL command the destination refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDdlError {
    /// Stop before acknowledging the transaction; a restart applies it again.
    #[default]
    Stop,
    /// Record the command as skipped and go on.
    Skip,
}

/// What happens when the destination refuses a change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnApplyError {
    /// Stop before acknowledging the transaction; a restart applies it again.
    #[default]
    Stop,
    /// Set the refused row aside in the dead-letter table and go on.
    DeadLetter,
}

/// `[snapshot]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// `parallel = 2`: copy workers, each with its own source and destination connection;
    /// they share the tables and the page ranges of big tables.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// `range_min_mb = 64`: tables of at most this size are copied by one COPY; bigger ones
    /// are split into page ranges that several workers copy at once (PostgreSQL 14+ sources;
    /// `0` splits every table of more than one page).
    #[serde(default = "default_range_min_mb")]
    pub range_min_mb: u64,
    /// `range_max_mb = 1024`: the largest page range; a split table gets
    /// `max(parallel, size / range_max_mb)` ranges.
    #[serde(default = "default_range_max_mb")]
    pub range_max_mb: u64,
    /// `indexes = true`: after copying a table pgmorph created, create the source's secondary
    /// indexes on it (with the mapped column names).
    #[serde(default = "default_indexes")]
    pub indexes: bool,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            parallel: default_parallel(),
            range_min_mb: default_range_min_mb(),
            range_max_mb: default_range_max_mb(),
            indexes: default_indexes(),
        }
    }
}

impl SnapshotConfig {
    /// How tables are split into page ranges.
    pub fn range_policy(&self) -> crate::model::RangePolicy {
        crate::model::RangePolicy {
            parallel: self.parallel,
            min_table_bytes: self.range_min_mb << 20,
            max_range_bytes: self.range_max_mb << 20,
        }
    }
}

/// `[apply]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// `parallel = 1`: destination connections that apply changes. Above 1, the changes of
    /// tables whose destination has a primary key and no foreign keys, triggers, rules or other
    /// unique or exclusion constraints are spread over the connections by key; every source
    /// transaction is still applied exactly once, but a reader may see part of one for a
    /// moment (see the README).
    #[serde(default = "default_apply_parallel")]
    pub parallel: usize,
    /// Not a setting: after a start again for a change that needs one connection, the
    /// transactions committed up to here are applied on one connection.
    #[serde(skip)]
    pub resume_one_lane_until: crate::model::Lsn,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        Self {
            parallel: default_apply_parallel(),
            resume_one_lane_until: crate::model::Lsn::ZERO,
        }
    }
}

fn default_apply_parallel() -> usize {
    1
}

/// The most apply connections `apply.parallel` may ask for.
pub const MAX_APPLY_PARALLEL: usize = 64;

fn default_parallel() -> usize {
    2
}

fn default_range_min_mb() -> u64 {
    64
}

fn default_range_max_mb() -> u64 {
    1024
}

fn default_indexes() -> bool {
    true
}

/// What happens to a row when a plugin fails on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Halt before acknowledging; a restart retries the same transaction.
    #[default]
    Stop,
    /// Log, count and drop the row.
    Skip,
    /// Write the row to the dead-letter table in the same destination transaction.
    DeadLetter,
}

/// `[plugins.<file stem>]`: settings of one plugin.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// `on_error = "stop" | "skip" | "dead_letter"`.
    #[serde(default)]
    pub on_error: OnError,
    /// `memory_mb = 64`: the plugin's memory cap.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// `timeout_ms = 1000`: CPU deadline of one call.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `[plugins.<stem>.config]`: handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// `clock = "deterministic" | "real"`: what the plugin's wall and monotonic clocks read.
    #[serde(default)]
    pub clock: Grant,
    /// `random = "deterministic" | "real"`: where the plugin's random bytes come from.
    #[serde(default)]
    pub random: Grant,
}

/// Whether a plugin sees the real clock or randomness, or values derived from the changes it
/// transforms (see docs/plugin-determinism.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Derived from the source transaction (or snapshot) and the row position: a replay gives
    /// the same values.
    #[default]
    Deterministic,
    /// The host's real clock or random source.
    Real,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        // A relative plugin directory is relative to the config file.
        if let (Some(dir), Some(base)) = (&config.plugin_dir, path.parent()) {
            if dir.is_relative() {
                config.plugin_dir = Some(base.join(dir));
            }
        }
        Ok(config)
    }

    /// Parses and validates config text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string() + &location(text, e.span()),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 50
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(format!(
                "name {:?} must be 1 to 50 lower-case letters, digits or '_' (it names the replication slot)",
                self.name
            ));
        }
        if let Some(tables) = &self.source.tables {
            if tables.is_empty() {
                return Err(
                    "source.tables is empty: list at least one table or use source.schema".into(),
                );
            }
            for t in tables {
                if TableName::parse_qualified(t).is_none() {
                    return Err(format!(
                        "source.tables entry {t:?} must be schema-qualified, like \"public.orders\" (quote a name with a dot: 'public.\"a.b\"')"
                    ));
                }
            }
        }
        for (table, filter) in &self.source.row_filters {
            if TableName::parse_qualified(table).is_none() {
                return Err(format!(
                    "source.row_filters key {table:?} must be a schema-qualified table, like \"public.orders\""
                ));
            }
            if filter.trim().is_empty() {
                return Err(format!(
                    "source.row_filters.{table:?} is empty: give a condition, like \"amount > 100\", or remove the key"
                ));
            }
        }
        if !(1..=MAX_APPLY_PARALLEL).contains(&self.apply.parallel) {
            return Err(format!(
                "apply.parallel must be between 1 and {MAX_APPLY_PARALLEL}"
            ));
        }
        if self.snapshot.parallel == 0 {
            return Err("snapshot.parallel must be at least 1".into());
        }
        if self.snapshot.range_max_mb == 0 {
            return Err("snapshot.range_max_mb must be at least 1".into());
        }
        self.reconnect.validate()
    }

    /// The name of the replication slot and of the publication.
    pub fn slot_name(&self) -> String {
        format!("pgmorph_{}", self.name)
    }

    /// The explicitly listed tables, if any.
    pub fn listed_tables(&self) -> Option<Vec<TableName>> {
        self.source
            .tables
            .as_ref()
            .map(|ts| ts.iter().map(|t| TableName::parse(t, "public")).collect())
    }

    /// The default destination schema: `destination.schema`, else the source database's name
    /// (`source_dbname`).
    pub fn dest_schema(&self, source_dbname: &str) -> String {
        self.destination
            .schema
            .clone()
            .unwrap_or_else(|| source_dbname.to_string())
    }

    /// The schema whose tables are replicated when `source.tables` is not set.
    pub fn source_schema(&self) -> String {
        self.source
            .schema
            .clone()
            .unwrap_or_else(|| "public".into())
    }

    /// Whether the publication names a partitioned table in its partitions' changes
    /// (`publish_via_partition_root`): with `source.partitions = "root"`.
    pub fn publish_via_root(&self) -> bool {
        self.source.partitions == Partitions::Root
    }

    /// The row filters of `[source.row_filters]`, by table.
    pub fn row_filters(&self) -> RowFilters {
        self.source
            .row_filters
            .iter()
            .filter_map(|(t, f)| Some((TableName::parse_qualified(t)?, f.trim().to_string())))
            .collect()
    }

    /// The tables an `always` start re-copies, if limited.
    pub fn snapshot_tables(&self) -> Option<Vec<TableName>> {
        self.source
            .snapshot_tables
            .as_ref()
            .map(|ts| ts.iter().map(|t| TableName::parse(t, "public")).collect())
    }

    /// Connection settings of the source.
    pub fn source_connection(&self) -> Result<ConnectionSettings, ConnectionError> {
        let mut settings = ConnectionSettings::from_url(
            "source",
            &self.source.url,
            self.source.password_file.as_deref(),
        )?;
        settings.batch_reads = self.source.read_batching.applies_to(&settings.host);
        settings.stream_in_progress = self.source.stream_large_transactions;
        settings.binary_values = self.source.binary_values;
        Ok(settings)
    }

    /// Connection settings of the destination.
    pub fn destination_connection(&self) -> Result<ConnectionSettings, ConnectionError> {
        ConnectionSettings::from_url(
            "destination",
            &self.destination.url,
            self.destination.password_file.as_deref(),
        )
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "pgconn"
[source]
url = "postgres://u@127.0.0.1:5432/postgres"
tables = ["public.orders"]
[destination]
url = "postgres://u@127.0.0.1:5433/postgres"
[plugins.10-mask]
on_error = "dead_letter"
config = { columns = ["email"] }
"#;

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(c.slot_name(), "pgmorph_pgconn");
        assert_eq!(c.listed_tables().unwrap()[0].to_string(), "public.orders");
        assert_eq!(c.plugins["10-mask"].on_error, OnError::DeadLetter);
    }

    #[test]
    fn names_an_unknown_key() {
        let text = GOOD.replace("tables =", "tabels =");
        let err = Config::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `tabels`"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn partitions_are_root_unless_set_to_leaf() {
        let config = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(config.source.partitions, Partitions::Root);
        let leaf = GOOD.replace("tables =", "partitions = \"leaf\"\ntables =");
        let config = Config::parse(&leaf, Path::new("c.toml")).unwrap();
        assert_eq!(config.source.partitions, Partitions::Leaf);
        let err = Config::parse(&leaf.replace("\"leaf\"", "\"leaves\""), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `leaves`"), "{err}");
    }

    #[test]
    fn rejects_bad_names_and_tables() {
        let err = Config::parse(&GOOD.replace("pgconn", "Pg-Conn"), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lower-case"), "{err}");
        let err = Config::parse(
            &GOOD.replace("public.orders", "orders"),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("schema-qualified"), "{err}");
    }

    #[test]
    fn reads_apply_lanes_within_bounds() {
        let c = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(c.apply.parallel, 1, "the default");
        let with = |n: &str| GOOD.to_string() + "\n[apply]\nparallel = " + n + "\n";
        let c = Config::parse(&with("8"), Path::new("c.toml")).unwrap();
        assert_eq!(c.apply.parallel, 8);
        for bad in ["0", "65"] {
            let err = Config::parse(&with(bad), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("apply.parallel must be between 1 and 64"),
                "{err}"
            );
        }
    }

    #[test]
    fn reads_what_to_do_with_a_refused_row() {
        let c = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(
            c.destination.on_apply_error,
            OnApplyError::Stop,
            "the default"
        );
        let text = GOOD.replace(
            "url = \"postgres://u@127.0.0.1:5433/postgres\"",
            "url = \"postgres://u@127.0.0.1:5433/postgres\"\non_apply_error = \"dead_letter\"",
        );
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(c.destination.on_apply_error, OnApplyError::DeadLetter);
        let err = Config::parse(&text.replace("dead_letter", "skip"), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("on_apply_error") || err.contains("unknown variant `skip`"),
            "{err}"
        );
    }

    #[test]
    fn reads_what_to_do_with_refused_source_ddl() {
        let c = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(c.destination.on_ddl_error, OnDdlError::Stop, "the default");
        let text = GOOD.replace(
            "url = \"postgres://u@127.0.0.1:5433/postgres\"",
            "url = \"postgres://u@127.0.0.1:5433/postgres\"\non_ddl_error = \"skip\"",
        );
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(c.destination.on_ddl_error, OnDdlError::Skip);
        let err = Config::parse(&text.replace("\"skip\"", "\"ignore\""), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `ignore`"), "{err}");
    }

    #[test]
    fn reads_failover_and_row_filters() {
        let c = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        assert!(!c.source.failover_slot, "off by default");
        assert!(c.row_filters().is_empty());
        let text = GOOD.replace(
            "tables = [\"public.orders\"]",
            "tables = [\"public.orders\"]\nfailover_slot = true\n[source.row_filters]\n\"public.orders\" = \" amount > 100 \"",
        );
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        assert!(c.source.failover_slot);
        assert_eq!(
            c.row_filters()
                .into_iter()
                .map(|(t, f)| (t.to_string(), f))
                .collect::<Vec<_>>(),
            vec![("public.orders".to_string(), "amount > 100".to_string())]
        );
        let err = Config::parse(
            &text.replace("\"public.orders\" = ", "orders = "),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("schema-qualified"), "{err}");
        let err = Config::parse(
            &text.replace("\" amount > 100 \"", "\" \""),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn accepts_a_quoted_table_name_with_a_dot() {
        let text = GOOD.replace(r#"["public.orders"]"#, r#"['public."a.b"']"#);
        let c = Config::parse(&text, Path::new("c.toml")).unwrap();
        let t = &c.listed_tables().unwrap()[0];
        assert_eq!((t.schema.as_str(), t.name.as_str()), ("public", "a.b"));
    }
}
