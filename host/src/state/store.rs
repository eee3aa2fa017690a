//! Reading and writing the connector's state rows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;
use tokio_postgres::Client;

use crate::model::Lsn;
use crate::model::PageRange;

/// Reading or writing state failed.
#[derive(Debug, thiserror::Error)]
#[error("connector state in the destination: {0}")]
pub struct StateError(#[from] tokio_postgres::Error);

/// A table's copy state from earlier runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSync {
    /// `pending`, `copying`, `copied` or `streaming`.
    pub phase: String,
    /// The stream position the table's copy corresponds to: changes of transactions
    /// committed before it are already in the copy.
    pub sync_lsn: Option<Lsn>,
}

impl TableSync {
    /// Whether the table's data is on the destination.
    pub fn is_copied(&self) -> bool {
        self.phase == "copied" || self.phase == "streaming"
    }
}

/// What a start needs to know about earlier runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorState {
    /// Whether the initial snapshot completed.
    pub snapshot_done: bool,
    /// The end LSN of the last transaction applied on the destination.
    pub last_lsn: Lsn,
}

/// The position written with each applied transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// End LSN of the applied source transaction.
    pub lsn: Lsn,
    /// Source transaction id.
    pub xid: u32,
    /// Source commit time, microseconds since 2000-01-01.
    pub commit_time: i64,
}

impl Progress {
    /// The `last_offset` JSON, like SynchDB's (`lsn`, `txId`, `ts_usec` in Unix microseconds).
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "lsn": self.lsn.to_string(),
            "lsn_num": self.lsn.0,
            "txId": self.xid,
            "ts_usec": self.commit_time + 946_684_800_000_000,
        })
    }
}

/// Counters of one applied transaction, added to `pgmorph.stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxCounts {
    /// Rows inserted.
    pub inserts: i64,
    /// Rows updated.
    pub updates: i64,
    /// Rows deleted.
    pub deletes: i64,
    /// Tables truncated.
    pub truncates: i64,
    /// Rows skipped by plugins.
    pub skipped: i64,
    /// Rows sent to the dead-letter table.
    pub dead_lettered: i64,
}

impl TxCounts {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.inserts
            + self.updates
            + self.deletes
            + self.truncates
            + self.skipped
            + self.dead_lettered
            == 0
    }
}

/// The SQL marking a table copied, run in the table's copy transaction:
/// $1 connector, $2 source table, $3 rows (text), $4 sync LSN (text).
pub(crate) const TABLE_COPIED: &str = "UPDATE pgmorph.tables SET phase = 'copied', \
     rows_copied = $3::text::bigint, sync_lsn = $4::text::pg_lsn WHERE connector = $1 AND source_table = $2";

/// The SQL recording a page range of a split table as copied (or refreshed), run in the
/// range's copy transaction: $1 connector, $2 source table, $3 first page, $4 end page (NULL:
/// open), $5 the snapshot the rows were read under (`pg_current_snapshot()` text), $6 the
/// layout of the rows (see [`CopiedRange::layout`]), $7 the destination table (quoted).
pub(crate) const RANGE_COPIED: &str = "INSERT INTO pgmorph.copied_ranges \
     (connector, source_table, first_page, end_page, snapshot, layout, dest_file) \
     VALUES ($1, $2, $3, $4, $5, $6, pg_relation_filenode(to_regclass($7))) \
     ON CONFLICT (connector, source_table, first_page) \
     DO UPDATE SET end_page = EXCLUDED.end_page, snapshot = EXCLUDED.snapshot, \
                   layout = EXCLUDED.layout, dest_file = EXCLUDED.dest_file";

/// The SQL adding a committed range's rows to a table's progress: $1 connector, $2 source
/// table, $3 rows (text).
pub(crate) const ROWS_COPIED: &str =
    "UPDATE pgmorph.tables SET rows_copied = rows_copied + $3::text::bigint \
     WHERE connector = $1 AND source_table = $2 AND phase = 'copying'";

/// The SQL forgetting the copied ranges of a table whose copy completed: $1 connector, $2
/// source table.
pub(crate) const FORGET_RANGES: &str =
    "DELETE FROM pgmorph.copied_ranges WHERE connector = $1 AND source_table = $2";

/// A page range of a split table recorded as copied by an unfinished copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedRange {
    /// The pages.
    pub range: PageRange,
    /// The snapshot the rows were read under (`pg_current_snapshot()` text).
    pub snapshot: String,
    /// The destination table and columns the rows were written as: a copy resumes only into
    /// the same layout.
    pub layout: String,
    /// The destination table's file when the range was written: a table truncated, dropped
    /// or rewritten since has another, and its copy is not resumed.
    pub dest_file: Option<u32>,
}

/// The SQL writing progress in the apply transaction: $1 name, $2 offset JSON.
pub(crate) const PROGRESS: &str =
    "UPDATE pgmorph.state SET last_offset = $2::text::jsonb, updated_at = now() WHERE name = $1";

/// The SQL writing an apply lane's progress in its transaction (`apply.parallel` above 1;
/// lane 0 writes [`PROGRESS`]): $1 name, $2 lane, $3 LSN (text).
pub(crate) const LANE_PROGRESS: &str = "INSERT INTO pgmorph.apply_lanes (connector, lane, lsn) \
     VALUES ($1, $2::text::integer, $3::text::pg_lsn) \
     ON CONFLICT (connector, lane) DO UPDATE SET lsn = EXCLUDED.lsn";

/// The SQL run with [`PROGRESS`] when every lane's changes up to that position are applied in
/// the same transaction or committed before it: the lanes' own positions behind it are
/// dropped (a lane without one is at the connector's position). $1 name, $2 LSN (text).
pub(crate) const LANES_SETTLED: &str =
    "DELETE FROM pgmorph.apply_lanes WHERE connector = $1 AND lsn <= $2::text::pg_lsn";

/// Where streaming resumes: the connector's position or an apply lane's behind it. $1 name.
const RESUME_LSN: &str = "SELECT least((s.last_offset->>'lsn')::pg_lsn, \
     (SELECT min(l.lsn) FROM pgmorph.apply_lanes l WHERE l.connector = s.name))::text \
     FROM pgmorph.state s WHERE s.name = $1";

/// The SQL adding counters: $1 name, $2..$7 counts, $8 commit time, $9 transactions (text).
pub(crate) const STATS: &str =
    "UPDATE pgmorph.stats SET transactions = transactions + $9::text::bigint, \
     inserts = inserts + $2::text::bigint, updates = updates + $3::text::bigint, \
     deletes = deletes + $4::text::bigint, truncates = truncates + $5::text::bigint, \
     skipped = skipped + $6::text::bigint, dead_lettered = dead_lettered + $7::text::bigint, \
     first_change_at = coalesce(first_change_at, now()), last_change_at = now(), \
     last_source_commit_at = to_timestamp($8::text::double precision / 1e6) WHERE connector = $1";

/// The SQL counting one row the destination refused and the sink set aside: $1 name.
pub(crate) const DEAD_LETTERED: &str =
    "UPDATE pgmorph.stats SET dead_lettered = dead_lettered + 1 WHERE connector = $1";

/// One connector's row of `pgmorph.state`, plus its counters.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Connector name.
    pub name: String,
    /// Always `postgres`.
    pub connector_type: String,
    /// Process id, -1 when stopped.
    pub pid: i32,
    /// `initial snapshot`, `change data capture` or `schema sync`.
    pub stage: String,
    /// `initializing`, `polling`, `stopped`, `error`, `paused`, ...
    pub state: String,
    /// `no error` or the last error.
    pub err: String,
    /// `{"lsn": ..., "txId": ..., "ts_usec": ...}`.
    pub last_offset: Option<serde_json::Value>,
    /// Counters from `pgmorph.stats`.
    pub stats: serde_json::Value,
    /// Per-table phases.
    pub tables: Vec<TableStatus>,
    /// Plugins: name, hash, load time, reloads, failed reloads, last error.
    pub plugins: Vec<serde_json::Value>,
    /// What to do about the last error (`fix config`, `retry later`, ...), if one stopped it.
    pub err_kind: Option<String>,
    /// Whether a process runs the connector (holds its lock); see [`Status::with_owner`].
    pub running: bool,
    /// The destination session holding the connector's lock, in words.
    pub owner: Option<String>,
    /// Reconnection attempts after lost connections.
    pub retries: super::Retries,
}

/// One row of `pgmorph.tables`.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    /// Source table.
    pub source_table: String,
    /// Destination table.
    pub dest_table: String,
    /// `pending`, `copying`, `copied` or `streaming`.
    pub phase: String,
    /// Rows copied by the snapshot.
    pub rows_copied: i64,
}

/// Access to the state tables over a dedicated destination connection.
pub struct StateStore {
    pub(super) client: Client,
    pub(super) name: String,
    /// How far this store has seen the connector get: [`COPYING`] or [`STREAMING`].
    pub(super) reached: AtomicU8,
}

/// The connector started copying tables.
const COPYING: u8 = 1;
/// The connector started streaming changes.
const STREAMING: u8 = 2;

impl StateStore {
    /// Creates the state tables if needed and the connector's rows if missing.
    pub async fn open(client: Client, name: &str) -> Result<Self, StateError> {
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(7419283); {} COMMIT;",
                super::schema::CREATE
            ))
            .await?;
        client
            .execute(
                "INSERT INTO pgmorph.state (name) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&name],
            )
            .await?;
        client
            .execute(
                "INSERT INTO pgmorph.stats (connector) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&name],
            )
            .await?;
        Ok(Self {
            client,
            name: name.to_string(),
            reached: AtomicU8::new(0),
        })
    }

    /// Whether the connector was recorded copying or streaming through this store.
    pub fn went_live(&self) -> bool {
        self.reached.load(Ordering::Relaxed) >= COPYING
    }

    /// Whether the connector was recorded streaming through this store.
    pub fn streamed(&self) -> bool {
        self.reached.load(Ordering::Relaxed) >= STREAMING
    }

    /// The connector name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL client (for status queries).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Loads what earlier runs left; `last_lsn` is where streaming resumes (see
    /// [`Self::lane_positions`]).
    pub async fn load(&self) -> Result<ConnectorState, StateError> {
        let done = self
            .client
            .query_one(
                "SELECT snapshot_done FROM pgmorph.state WHERE name = $1",
                &[&self.name],
            )
            .await?;
        let lsn = self.client.query_one(RESUME_LSN, &[&self.name]).await?;
        Ok(ConnectorState {
            snapshot_done: done.get(0),
            last_lsn: lsn
                .get::<_, Option<String>>(0)
                .and_then(|s| s.parse().ok())
                .unwrap_or_default(),
        })
    }

    /// The connector's position, and the apply lanes' own ones by lane (`apply.parallel`
    /// above 1): a lane's changes of source transactions ending at or before its position are
    /// applied. A lane without one is at the connector's position.
    pub async fn lane_positions(&self) -> Result<(Lsn, HashMap<u32, Lsn>), StateError> {
        let main = self
            .client
            .query_one(
                "SELECT last_offset->>'lsn' FROM pgmorph.state WHERE name = $1",
                &[&self.name],
            )
            .await?
            .get::<_, Option<String>>(0)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let rows = self
            .client
            .query(
                "SELECT lane, lsn::text FROM pgmorph.apply_lanes WHERE connector = $1",
                &[&self.name],
            )
            .await?;
        let lanes = rows
            .iter()
            .filter_map(|r| {
                let lane = u32::try_from(r.get::<_, i32>(0)).ok()?;
                Some((lane, r.get::<_, String>(1).parse().ok()?))
            })
            .collect();
        Ok((main, lanes))
    }

    /// Sets stage, state and error text, and this process's pid (or -1 when stopping).
    pub async fn set(
        &self,
        stage: Option<&str>,
        state: &str,
        err: Option<&str>,
    ) -> Result<(), StateError> {
        let pid = if matches!(state, "stopped" | "error" | "done") || stage == Some("schema sync") {
            -1
        } else {
            std::process::id() as i32
        };
        // Copying or streaming again ends a run of reconnection attempts.
        self.client
            .execute(
                "UPDATE pgmorph.state SET stage = coalesce($2, stage), state = $3, \
                 err = coalesce($4, err), err_kind = CASE WHEN $4 IS NULL THEN err_kind END, \
                 pid = $5, updated_at = now(), \
                 retries = CASE WHEN $3 IN ('copying', 'polling') THEN 0 ELSE retries END \
                 WHERE name = $1",
                &[&self.name, &stage, &state, &err, &pid],
            )
            .await?;
        let reached = match state {
            "copying" => COPYING,
            "polling" => STREAMING,
            _ => 0,
        };
        self.reached.fetch_max(reached, Ordering::Relaxed);
        if let Some(phase) = crate::metrics::health::Phase::of_state(state) {
            crate::metrics::health::set(phase);
        }
        Ok(())
    }

    /// Records what the operator should do about the error just recorded (see
    /// [`crate::error_kind::ErrorKind`]); cleared when the connector starts again.
    pub async fn set_error_kind(&self, kind: &str) -> Result<(), StateError> {
        self.client
            .execute(
                "UPDATE pgmorph.state SET err_kind = $2 WHERE name = $1",
                &[&self.name, &kind],
            )
            .await?;
        Ok(())
    }

    /// Records a new main slot: the snapshot is not done, streaming resumes from the slot's
    /// consistent point, and no table is copied yet.
    pub async fn start_initial(
        &self,
        dest_schema: &str,
        consistent_point: Lsn,
    ) -> Result<(), StateError> {
        let offset = Progress {
            lsn: consistent_point,
            ..Progress::default()
        }
        .to_json()
        .to_string();
        self.client
            .execute(
                "UPDATE pgmorph.state SET snapshot_done = false, last_offset = $3::text::jsonb, dest_schema = $2 \
                 WHERE name = $1",
                &[&self.name, &dest_schema, &offset],
            )
            .await?;
        for sql in [
            "DELETE FROM pgmorph.tables WHERE connector = $1",
            "DELETE FROM pgmorph.copied_ranges WHERE connector = $1",
            "DELETE FROM pgmorph.apply_lanes WHERE connector = $1",
        ] {
            self.client.execute(sql, &[&self.name]).await?;
        }
        Ok(())
    }

    /// Sets the position streaming resumes from (every table is about to be copied again).
    pub async fn move_position(&self, lsn: Lsn) -> Result<(), StateError> {
        let offset = Progress {
            lsn,
            ..Progress::default()
        }
        .to_json()
        .to_string();
        self.client
            .execute(
                "UPDATE pgmorph.state SET last_offset = $2::text::jsonb WHERE name = $1",
                &[&self.name, &offset],
            )
            .await?;
        self.client
            .execute(
                "DELETE FROM pgmorph.apply_lanes WHERE connector = $1",
                &[&self.name],
            )
            .await?;
        Ok(())
    }

    /// Per-table copy state of earlier runs, by source table name.
    pub async fn tables(&self) -> Result<HashMap<String, TableSync>, StateError> {
        Ok(self
            .client
            .query(
                "SELECT source_table, phase, sync_lsn::text FROM pgmorph.tables WHERE connector = $1",
                &[&self.name],
            )
            .await?
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    TableSync {
                        phase: r.get(1),
                        sync_lsn: r.get::<_, Option<String>>(2).and_then(|s| s.parse().ok()),
                    },
                )
            })
            .collect())
    }

    /// The page ranges of split tables recorded as copied, by source table, with the
    /// snapshot each was read under.
    pub async fn copied_ranges(&self) -> Result<HashMap<String, Vec<CopiedRange>>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT source_table, first_page, end_page, snapshot, layout, dest_file \
                 FROM pgmorph.copied_ranges WHERE connector = $1 ORDER BY first_page",
                &[&self.name],
            )
            .await?;
        let mut out: HashMap<String, Vec<CopiedRange>> = HashMap::new();
        for r in rows {
            let first: i64 = r.get(1);
            let end: Option<i64> = r.get(2);
            out.entry(r.get(0)).or_default().push(CopiedRange {
                range: PageRange {
                    start: (first > 0).then_some(first as u64),
                    end: end.map(|e| e as u64),
                },
                snapshot: r.get(3),
                layout: r.get(4),
                dest_file: r.get(5),
            });
        }
        Ok(out)
    }

    /// Forgets the copied ranges of `tables` (they are copied again from the start).
    pub async fn forget_ranges(&self, tables: &[String]) -> Result<(), StateError> {
        self.client
            .execute(
                "DELETE FROM pgmorph.copied_ranges WHERE connector = $1 AND source_table = ANY($2)",
                &[&self.name, &tables],
            )
            .await?;
        Ok(())
    }

    /// Marks tables as about to be copied (phase `pending`), keeping the others.
    pub async fn plan_copies(&self, tables: &[(String, String)]) -> Result<(), StateError> {
        self.client
            .execute(
                "UPDATE pgmorph.stats SET snapshot_begin = now(), snapshot_end = NULL WHERE connector = $1",
                &[&self.name],
            )
            .await?;
        for (source, dest) in tables {
            self.client
                .execute(
                    "INSERT INTO pgmorph.tables (connector, source_table, dest_table) VALUES ($1, $2, $3) \
                     ON CONFLICT (connector, source_table) DO UPDATE \
                     SET dest_table = EXCLUDED.dest_table, phase = 'pending', rows_copied = 0, sync_lsn = NULL",
                    &[&self.name, source, dest],
                )
                .await?;
        }
        Ok(())
    }

    /// Records tables that stream without a copy (mode `no_data`).
    pub async fn mark_streaming(&self, tables: &[(String, String)]) -> Result<(), StateError> {
        for (source, dest) in tables {
            self.client
                .execute(
                    "INSERT INTO pgmorph.tables (connector, source_table, dest_table, phase) VALUES ($1, $2, $3, 'streaming') \
                     ON CONFLICT (connector, source_table) DO UPDATE SET dest_table = EXCLUDED.dest_table, phase = 'streaming'",
                    &[&self.name, source, dest],
                )
                .await?;
        }
        Ok(())
    }

    /// Forgets tables no longer selected (their destination tables stay).
    pub async fn forget_tables_except(&self, keep: &[String]) -> Result<(), StateError> {
        self.client
            .execute(
                "DELETE FROM pgmorph.tables WHERE connector = $1 AND NOT (source_table = ANY($2))",
                &[&self.name, &keep],
            )
            .await?;
        self.client
            .execute(
                "DELETE FROM pgmorph.copied_ranges WHERE connector = $1 AND NOT (source_table = ANY($2))",
                &[&self.name, &keep],
            )
            .await?;
        Ok(())
    }

    /// Sets a table's phase and copied-row count.
    pub async fn set_table_phase(
        &self,
        source: &str,
        phase: &str,
        rows: Option<i64>,
    ) -> Result<(), StateError> {
        self.client
            .execute(
                "UPDATE pgmorph.tables SET phase = $3, rows_copied = coalesce($4, rows_copied) \
                 WHERE connector = $1 AND source_table = $2",
                &[&self.name, &source, &phase, &rows],
            )
            .await?;
        Ok(())
    }

    /// Marks the snapshot complete: every copied table now streams.
    pub async fn finish_snapshot(&self, rows: i64) -> Result<(), StateError> {
        self.client
            .execute(
                "UPDATE pgmorph.state SET snapshot_done = true, stage = 'change data capture' WHERE name = $1",
                &[&self.name],
            )
            .await?;
        self.client
            .execute(
                "UPDATE pgmorph.stats SET snapshot_end = now(), snapshot_rows = snapshot_rows + $2 WHERE connector = $1",
                &[&self.name, &rows],
            )
            .await?;
        self.client
            .execute(
                "UPDATE pgmorph.tables SET phase = 'streaming' WHERE connector = $1 AND phase = 'copied'",
                &[&self.name],
            )
            .await?;
        Ok(())
    }

    /// Takes the pending operator request (`pause`, `resume`, `stop`, `resync`), clearing it.
    pub async fn take_request(&self) -> Result<Option<String>, StateError> {
        Ok(self
            .client
            .query_opt(
                "UPDATE pgmorph.state s SET request = NULL FROM (SELECT request FROM pgmorph.state \
                 WHERE name = $1 AND request IS NOT NULL FOR UPDATE) old WHERE s.name = $1 RETURNING old.request",
                &[&self.name],
            )
            .await?
            .map(|r| r.get(0)))
    }

    /// Records the plugins now serving traffic (`plugins`: name -> content hash). With
    /// `reload`, plugins whose hash changed count a reload; plugins no longer present are
    /// marked inactive.
    pub async fn record_plugins(
        &self,
        plugins: &std::collections::BTreeMap<String, String>,
        reload: bool,
    ) -> Result<(), StateError> {
        if !reload {
            self.client
                .execute(
                    "DELETE FROM pgmorph.plugins WHERE connector = $1",
                    &[&self.name],
                )
                .await?;
        }
        self.client
            .execute(
                "UPDATE pgmorph.plugins SET active = false WHERE connector = $1",
                &[&self.name],
            )
            .await?;
        for (plugin, hash) in plugins {
            self.client
                .execute(
                    "INSERT INTO pgmorph.plugins (connector, plugin, hash) VALUES ($1, $2, $3) \
                     ON CONFLICT (connector, plugin) DO UPDATE SET active = true, \
                       reloads = pgmorph.plugins.reloads + (pgmorph.plugins.hash <> EXCLUDED.hash)::int, \
                       loaded_at = CASE WHEN pgmorph.plugins.hash <> EXCLUDED.hash THEN now() ELSE pgmorph.plugins.loaded_at END, \
                       hash = EXCLUDED.hash",
                    &[&self.name, plugin, hash],
                )
                .await?;
        }
        Ok(())
    }

    /// Records a rejected reload against the plugin (or `(config)`) it is blamed on.
    pub async fn record_failed_reload(
        &self,
        plugin: &(String, String),
        error: &str,
    ) -> Result<(), StateError> {
        self.client
            .execute(
                "INSERT INTO pgmorph.plugins (connector, plugin, hash, failed_reloads, last_error, active) \
                 VALUES ($1, $2, '-', 1, $3, false) \
                 ON CONFLICT (connector, plugin) DO UPDATE SET \
                   failed_reloads = pgmorph.plugins.failed_reloads + 1, last_error = EXCLUDED.last_error",
                &[&self.name, &plugin.0, &format!("{} (file hash {})", error, plugin.1)],
            )
            .await?;
        Ok(())
    }

    /// Reads a connector's status for `pgmorph status`; `None` if it never ran.
    pub async fn status(client: &Client, name: &str) -> Result<Option<Status>, StateError> {
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_tables WHERE schemaname = 'pgmorph' AND tablename = 'state'",
                &[],
            )
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let Some(row) = client
            .query_opt(
                &format!(
                    "SELECT name, connector_type, pid, stage, state, err, last_offset::text, \
                     err_kind, {} FROM pgmorph.state WHERE name = $1",
                    super::retries::COLUMNS
                ),
                &[&name],
            )
            .await?
        else {
            return Ok(None);
        };
        let stats: Option<String> = client
            .query_opt(
                "SELECT row_to_json(s)::text FROM pgmorph.stats s WHERE connector = $1",
                &[&name],
            )
            .await?
            .map(|r| r.get(0));
        let tables = client
            .query(
                "SELECT source_table, dest_table, phase, rows_copied FROM pgmorph.tables WHERE connector = $1 ORDER BY 1",
                &[&name],
            )
            .await?
            .iter()
            .map(|r| TableStatus {
                source_table: r.get(0),
                dest_table: r.get(1),
                phase: r.get(2),
                rows_copied: r.get(3),
            })
            .collect();
        let plugins = client
            .query(
                "SELECT row_to_json(p)::text FROM (SELECT plugin, hash, loaded_at, reloads, failed_reloads, \
                 last_error, active FROM pgmorph.plugins WHERE connector = $1 ORDER BY plugin) p",
                &[&name],
            )
            .await?
            .iter()
            .filter_map(|r| serde_json::from_str(&r.get::<_, String>(0)).ok())
            .collect();
        Ok(Some(Status {
            plugins,
            running: false,
            owner: None,
            err_kind: row.get(7),
            retries: super::Retries::from_row(&row, 8),
            name: row.get(0),
            connector_type: row.get(1),
            pid: row.get(2),
            stage: row.get(3),
            state: row.get(4),
            err: row.get(5),
            last_offset: row
                .get::<_, Option<String>>(6)
                .and_then(|s| serde_json::from_str(&s).ok()),
            stats: stats
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(serde_json::Value::Null),
            tables,
        }))
    }

    /// Deletes the connector's rows (for `pgmorph reset`).
    pub async fn delete(client: &Client, name: &str) -> Result<(), StateError> {
        for sql in [
            "DELETE FROM pgmorph.state WHERE name = $1",
            "DELETE FROM pgmorph.tables WHERE connector = $1",
            "DELETE FROM pgmorph.copied_ranges WHERE connector = $1",
            "DELETE FROM pgmorph.stats WHERE connector = $1",
            "DELETE FROM pgmorph.attributes WHERE connector = $1",
            "DELETE FROM pgmorph.plugins WHERE connector = $1",
            "DELETE FROM pgmorph.apply_lanes WHERE connector = $1",
        ] {
            client.execute(sql, &[&name]).await?;
        }
        super::snapshot_progress::clear(client, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_written_as_synchdb_writes_its_offset() {
        let p = Progress {
            lsn: "16/B374D848".parse().unwrap(),
            xid: 742,
            commit_time: 1_000_000,
        };
        let json = p.to_json();
        assert_eq!(json["lsn"], "16/B374D848");
        assert_eq!(json["lsn_num"], 0x16_B374_D848u64);
        assert_eq!(json["txId"], 742);
        // Microseconds since 2000-01-01 become Unix microseconds.
        assert_eq!(json["ts_usec"], 946_684_801_000_000i64);
    }

    #[test]
    fn counters_are_empty_only_when_nothing_was_counted() {
        assert!(TxCounts::default().is_empty());
        let c = TxCounts {
            dead_lettered: 1,
            ..TxCounts::default()
        };
        assert!(!c.is_empty());
    }

    #[test]
    fn only_copied_or_streaming_tables_count_as_copied() {
        let phase = |p: &str| TableSync {
            phase: p.into(),
            sync_lsn: None,
        };
        assert!(phase("copied").is_copied() && phase("streaming").is_copied());
        assert!(!phase("pending").is_copied() && !phase("copying").is_copied());
    }
}
