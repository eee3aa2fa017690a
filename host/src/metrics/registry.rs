//! The metric families pgmorph exposes, registered once, and their Prometheus text form.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Registered names (counters get `_total` appended when exposed). Documented in
/// `docs/metrics.md`.
pub(super) mod names {
    pub const CHANGES_APPLIED: &str = "pgmorph_changes_applied";
    pub const TRANSACTIONS_APPLIED: &str = "pgmorph_transactions_applied";
    pub const GROUP_COMMIT: &str = "pgmorph_group_commit_transactions";
    pub const LAG_SECONDS: &str = "pgmorph_apply_lag_seconds";
    pub const LAG_BYTES: &str = "pgmorph_apply_lag_bytes";
    pub const RETAINED_WAL: &str = "pgmorph_slot_retained_wal_bytes";
    pub const SNAPSHOT_ROWS: &str = "pgmorph_snapshot_rows_copied";
    pub const SNAPSHOT_TABLES: &str = "pgmorph_snapshot_tables";
    pub const SNAPSHOT_TABLES_DONE: &str = "pgmorph_snapshot_tables_done";
    pub const PLUGIN_CALLS: &str = "pgmorph_plugin_calls";
    pub const PLUGIN_SECONDS: &str = "pgmorph_plugin_call_duration_seconds";
    pub const PLUGIN_RELOADS: &str = "pgmorph_plugin_reloads";
    pub const DEAD_LETTERS: &str = "pgmorph_dead_letters";
    pub const ERRORS: &str = "pgmorph_errors";
    pub const RECONNECTS: &str = "pgmorph_reconnects";
    pub const LARGE_TRANSACTIONS: &str = "pgmorph_large_transactions";
    pub const STREAMING: &str = "pgmorph_streaming";
}

/// `table`, `op`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableOp {
    pub table: String,
    pub op: &'static str,
}

/// `table`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableLabel {
    pub table: String,
}

/// `table`, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DeadLetterLabels {
    pub table: String,
    pub reason: &'static str,
}

/// `plugin`, `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PluginResult {
    pub plugin: String,
    pub result: &'static str,
}

/// `plugin`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PluginLabel {
    pub plugin: String,
}

/// `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub result: &'static str,
}

/// `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    pub outcome: &'static str,
}

/// `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric family, with the registry that renders them.
pub(super) struct Metrics {
    registry: Registry,
    pub changes: Family<TableOp, Counter>,
    pub transactions: Counter,
    pub group_commit: Histogram,
    pub lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub lag_bytes: Gauge,
    pub retained_wal: Gauge,
    pub snapshot_rows: Family<TableLabel, Counter>,
    pub snapshot_tables: Gauge,
    pub snapshot_tables_done: Gauge,
    pub plugin_calls: Family<PluginResult, Counter>,
    pub plugin_seconds: HistogramFamily<PluginLabel>,
    pub plugin_reloads: Family<ResultLabel, Counter>,
    pub dead_letters: Family<DeadLetterLabels, Counter>,
    pub errors: Family<KindLabel, Counter>,
    pub reconnects: Counter,
    pub large_transactions: Family<OutcomeLabel, Counter>,
    pub streaming: Gauge,
}

fn plugin_histogram() -> Histogram {
    // 0.1 ms to about 1.6 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 8))
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            changes: Family::default(),
            transactions: Counter::default(),
            group_commit: Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]),
            lag_seconds: Gauge::default(),
            lag_bytes: Gauge::default(),
            retained_wal: Gauge::default(),
            snapshot_rows: Family::default(),
            snapshot_tables: Gauge::default(),
            snapshot_tables_done: Gauge::default(),
            plugin_calls: Family::default(),
            plugin_seconds: Family::new_with_constructor(plugin_histogram),
            plugin_reloads: Family::default(),
            dead_letters: Family::default(),
            errors: Family::default(),
            reconnects: Counter::default(),
            large_transactions: Family::default(),
            streaming: Gauge::default(),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        use names::*;
        let r = &mut self.registry;
        r.register(
            CHANGES_APPLIED,
            "Row changes committed on the destination, by source table and operation",
            self.changes.clone(),
        );
        r.register(
            TRANSACTIONS_APPLIED,
            "Source transactions committed on the destination",
            self.transactions.clone(),
        );
        r.register(
            GROUP_COMMIT,
            "Source transactions per destination commit",
            self.group_commit.clone(),
        );
        r.register(
            LAG_SECONDS,
            "Seconds from the source commit to the destination commit, at the last destination commit",
            self.lag_seconds.clone(),
        );
        r.register(
            LAG_BYTES,
            "Bytes of source WAL past the slot's confirmed position (sampled)",
            self.lag_bytes.clone(),
        );
        r.register(
            RETAINED_WAL,
            "Bytes of WAL the slot keeps on the source (sampled)",
            self.retained_wal.clone(),
        );
        r.register(
            SNAPSHOT_ROWS,
            "Rows written by snapshot copies, by source table",
            self.snapshot_rows.clone(),
        );
        r.register(
            SNAPSHOT_TABLES,
            "Tables the running snapshot copies",
            self.snapshot_tables.clone(),
        );
        r.register(
            SNAPSHOT_TABLES_DONE,
            "Tables the running snapshot has finished",
            self.snapshot_tables_done.clone(),
        );
        r.register(
            PLUGIN_CALLS,
            "Row hook calls into a plugin, by plugin and result",
            self.plugin_calls.clone(),
        );
        r.register(
            PLUGIN_SECONDS,
            "Duration of row hook calls into a plugin",
            self.plugin_seconds.clone(),
        );
        r.register(
            PLUGIN_RELOADS,
            "Plugin and config reloads, by result (ok: validated, rejected: the running chain stays)",
            self.plugin_reloads.clone(),
        );
        r.register(
            DEAD_LETTERS,
            "Rows written to pgmorph.dead_letters, by source table and reason",
            self.dead_letters.clone(),
        );
        r.register(
            ERRORS,
            "Connector errors (each one stopped a start), by what to do about them",
            self.errors.clone(),
        );
        r.register(
            RECONNECTS,
            "Starts again after a lost connection",
            self.reconnects.clone(),
        );
        r.register(
            LARGE_TRANSACTIONS,
            "Large source transactions the source sent while they ran, by outcome",
            self.large_transactions.clone(),
        );
        r.register(
            STREAMING,
            "1 while changes stream (the health endpoint answers 200), else 0",
            self.streaming.clone(),
        );
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each metric is documented in `docs/metrics.md`, in a table row starting with its name.
    #[test]
    fn the_documented_metrics_are_the_ones_registered() {
        let docs = include_str!("../../../docs/metrics.md");
        let mut documented: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .filter(|n| n.starts_with("pgmorph_"))
            .collect();
        documented.sort();
        let m = Metrics::new();
        // A family is rendered once it has a member.
        let table = || "public.t".to_string();
        let plugin = || "p".to_string();
        m.changes
            .get_or_create(&TableOp {
                table: table(),
                op: "insert",
            })
            .inc();
        m.snapshot_rows
            .get_or_create(&TableLabel { table: table() })
            .inc();
        m.plugin_calls
            .get_or_create(&PluginResult {
                plugin: plugin(),
                result: "ok",
            })
            .inc();
        m.plugin_seconds
            .get_or_create(&PluginLabel { plugin: plugin() })
            .observe(0.1);
        m.plugin_reloads
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        let dead = DeadLetterLabels {
            table: table(),
            reason: "plugin",
        };
        m.dead_letters.get_or_create(&dead).inc();
        m.errors
            .get_or_create(&KindLabel { kind: "bug".into() })
            .inc();
        m.large_transactions
            .get_or_create(&OutcomeLabel {
                outcome: "committed",
            })
            .inc();
        let text = m.render();
        let mut served: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        served.sort();
        assert_eq!(documented, served, "{text}");
    }
}
