//! Prometheus metrics and the health endpoint of a running connector.
//!
//! Off unless [`serve`] was called (`[metrics] listen = "127.0.0.1:9187"`): until then every
//! recording function below returns at once. The data path calls these functions at its single
//! points (a destination commit, a plugin call, a dead letter, a reload, a reconnection); the
//! names, types and labels are documented in `docs/metrics.md`.

mod applied;
pub mod health;
mod registry;
mod server;

use std::sync::OnceLock;
use std::time::Duration;

pub use applied::{Applied, Tally};
pub use server::{serve, MetricsError, Server};

use registry::{
    DeadLetterLabels, KindLabel, Metrics, PluginLabel, PluginResult, ResultLabel, TableLabel,
};

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The metrics, once installed.
fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Installs the metrics (once per process); recording starts now.
fn install() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// Every metric in the Prometheus text format; empty before [`serve`].
pub fn render() -> String {
    get().map(Metrics::render).unwrap_or_default()
}

/// A destination commit of source transactions (see [`Tally`]).
fn applied(a: &Applied) {
    let Some(m) = get() else { return };
    for (table, counts) in &a.tables {
        for (op, n) in applied::OPS.iter().zip(counts) {
            if *n > 0 {
                let labels = registry::TableOp {
                    table: table.clone(),
                    op,
                };
                m.changes.get_or_create(&labels).inc_by(*n);
            }
        }
    }
    if a.transactions > 0 {
        m.transactions.inc_by(a.transactions);
        m.group_commit.observe(a.transactions as f64);
        m.lag_seconds.set(a.lag_seconds());
    }
}

/// The slot's distance and retained WAL on the source, as just sampled.
pub fn slot_sampled(lag_bytes: Option<u64>, retained_bytes: u64) {
    let Some(m) = get() else { return };
    if let Some(lag) = lag_bytes {
        m.lag_bytes.set(lag.min(i64::MAX as u64) as i64);
    }
    m.retained_wal
        .set(retained_bytes.min(i64::MAX as u64) as i64);
}

/// A snapshot starts copying `tables` tables.
pub fn snapshot_started(tables: usize) {
    let Some(m) = get() else { return };
    m.snapshot_tables.set(tables as i64);
    m.snapshot_tables_done.set(0);
}

/// A snapshot COPY stream (a table or a page range of it) wrote `rows` rows.
pub fn snapshot_rows(table: &str, rows: u64) {
    let Some(m) = get() else { return };
    let labels = TableLabel {
        table: table.to_string(),
    };
    m.snapshot_rows.get_or_create(&labels).inc_by(rows);
}

/// A snapshot finished copying one table.
pub fn snapshot_table_done() {
    if let Some(m) = get() {
        m.snapshot_tables_done.inc();
    }
}

/// One row hook call into `plugin` took `took`.
pub fn plugin_call(plugin: &str, took: Duration, ok: bool) {
    let Some(m) = get() else { return };
    let result = PluginResult {
        plugin: plugin.to_string(),
        result: if ok { "ok" } else { "error" },
    };
    m.plugin_calls.get_or_create(&result).inc();
    let labels = PluginLabel {
        plugin: result.plugin,
    };
    m.plugin_seconds
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// A reload of plugins and config was validated (`ok`) or rejected.
pub fn plugin_reload(ok: bool) {
    let Some(m) = get() else { return };
    let result = if ok { "ok" } else { "rejected" };
    m.plugin_reloads
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// Why a row went to the dead-letter table.
#[derive(Debug, Clone, Copy)]
pub enum DeadLetterReason {
    /// A plugin failed on it under `on_error = "dead_letter"`.
    Plugin,
    /// The destination refused it under `on_apply_error = "dead_letter"`.
    Refused,
}

/// A row of `table` (the source table) written to the dead-letter table.
pub fn dead_letter(table: &str, reason: DeadLetterReason) {
    let Some(m) = get() else { return };
    let labels = DeadLetterLabels {
        table: table.to_string(),
        reason: match reason {
            DeadLetterReason::Plugin => "plugin",
            DeadLetterReason::Refused => "refused",
        },
    };
    m.dead_letters.get_or_create(&labels).inc();
}

/// A start of the connector failed; `kind` says what to do about it (see
/// [`crate::error_kind::ErrorKind::as_str`]).
pub fn error(kind: &str) {
    let Some(m) = get() else { return };
    let labels = KindLabel {
        kind: kind.replace(' ', "_"),
    };
    m.errors.get_or_create(&labels).inc();
}

/// A large source transaction sent while it ran ended: `committed` (applied as it ran),
/// `aborted` on the source, or `whole` (given up, applied after its commit instead).
pub fn large_transaction(outcome: &'static str) {
    if let Some(m) = get() {
        m.large_transactions
            .get_or_create(&registry::OutcomeLabel { outcome })
            .inc();
    }
}

/// The connector lost a connection and will start again.
pub fn reconnecting() {
    health::set(health::Phase::Reconnecting);
    if let Some(m) = get() {
        m.reconnects.inc();
    }
}

fn streaming(on: bool) {
    if let Some(m) = get() {
        m.streaming.set(on as i64);
    }
}
