//! The data: source schema and initial rows, and the CDC loads run while the replicator is
//! stopped.
//!
//! Every load ends by bumping `public.bench_marker.seq`. Both replicators apply source
//! transactions in commit order, so the marker reaching the destination means the whole
//! backlog before it has been applied.

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use pgmorph::cluster::LocalCluster;
use tokio_postgres::Client;

use crate::cli::Workload;

/// The replicated tables, schema-qualified.
pub const TABLES: &[&str] = &[
    "public.mixed",
    "public.wide",
    "public.pgbench_accounts",
    "public.pgbench_branches",
    "public.pgbench_tellers",
    "public.pgbench_history",
    "public.bench_marker",
];

/// How much data to generate.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Rows of `public.mixed`.
    pub rows: u64,
    /// Rows of `public.wide`.
    pub wide_rows: u64,
    /// Columns of `public.wide`, `id` included.
    pub wide_cols: usize,
    /// `pgbench -i -s`.
    pub pgbench_scale: u32,
    /// CDC inserts.
    pub inserts: u64,
    /// Rows per insert transaction.
    pub insert_batch: u64,
    /// CDC single-row updates.
    pub updates: u64,
    /// CDC single-row deletes.
    pub deletes: u64,
    /// Statements per update/delete transaction.
    pub tx_batch: u64,
    /// pgbench clients.
    pub pgbench_clients: u64,
    /// pgbench transactions per client.
    pub pgbench_tx_per_client: u64,
    /// Rows of the one big insert transaction.
    pub bigtx_rows: u64,
}

/// Creates and fills the source tables, runs `pgbench -i`, then VACUUM ANALYZE + CHECKPOINT
/// so every variant starts from settled tables.
pub async fn populate(cluster: &LocalCluster, client: &Client, sizes: &Sizes) -> Result<()> {
    client
        .batch_execute(
            "CREATE TABLE mixed (
                id int8 PRIMARY KEY,
                name text NOT NULL,
                amount numeric(12,2),
                created_at timestamptz NOT NULL,
                payload jsonb,
                active bool NOT NULL,
                ext_ref text,
                tags int4[]
            );
            CREATE TABLE bench_marker (id int4 PRIMARY KEY, seq int8 NOT NULL);
            INSERT INTO bench_marker VALUES (1, 0);",
        )
        .await
        .context("creating the source tables")?;
    client
        .batch_execute(&insert_mixed_sql(1, sizes.rows))
        .await
        .context("filling public.mixed")?;
    client
        .batch_execute(&wide_table_sql(sizes.wide_cols, sizes.wide_rows))
        .await
        .context("creating and filling public.wide")?;
    run_pgbench(
        cluster,
        &["-i", "-q", "-s", &sizes.pgbench_scale.to_string()],
    )
    .await?;
    // One statement per call: VACUUM cannot run in the implicit multi-statement transaction.
    for sql in [
        "ALTER TABLE pgbench_history REPLICA IDENTITY FULL",
        "VACUUM ANALYZE",
        "CHECKPOINT",
    ] {
        client
            .batch_execute(sql)
            .await
            .with_context(|| format!("settling the source tables: {sql}"))?;
    }
    Ok(())
}

/// `INSERT INTO mixed` of ids `from..=to`, with realistic values and some NULLs.
pub fn insert_mixed_sql(from: u64, to: u64) -> String {
    format!(
        "INSERT INTO mixed
         SELECT g,
                'customer ' || g || ' ' || repeat(chr(97 + (g % 26)::int), 5 + (g % 40)::int),
                CASE WHEN g % 10 = 0 THEN NULL ELSE (g % 1000003) / 100.0 END,
                timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds',
                CASE WHEN g % 7 = 0 THEN NULL
                     ELSE jsonb_build_object('k', g, 'tier', g % 5, 'note', 'n' || (g % 997),
                                             'tags', jsonb_build_array(g % 3, g % 11)) END,
                g % 3 = 0,
                md5(g::text)::uuid::text,
                ARRAY[(g % 10)::int4, (g % 100)::int4, (g % 1000)::int4]
         FROM generate_series({from}::int8, {to}::int8) g"
    )
}

/// `CREATE TABLE wide` with `cols` columns of cycling types, and its rows.
fn wide_table_sql(cols: usize, rows: u64) -> String {
    const TYPES: &[&str] = &[
        "int4",
        "int8",
        "text",
        "numeric(14,4)",
        "timestamptz",
        "bool",
        "float8",
        "text",
        "date",
    ];
    let mut defs = vec!["id int8 PRIMARY KEY".to_owned()];
    let mut values = vec!["g".to_owned()];
    for i in 1..cols {
        let ty = TYPES[(i - 1) % TYPES.len()];
        defs.push(format!("c{i:02} {ty}"));
        let value = match ty {
            "int4" => format!("((g * {i}) % 100000)::int4"),
            "int8" => format!("g * 1000 + {i}"),
            "text" => format!("'w{i}-' || md5((g + {i})::text)"),
            "numeric(14,4)" => format!("round((g % 10007) * 1.37 + {i}, 4)"),
            "timestamptz" => {
                format!("timestamptz '2024-01-01 00:00:00+00' + (g + {i}) * interval '1 minute'")
            }
            "bool" => format!("(g + {i}) % 2 = 0"),
            "float8" => format!("(g % 1000) / 7.0::float8 + {i}"),
            _ => format!("date '2020-01-01' + ((g + {i}) % 2000)::int"),
        };
        // Every 13th value is NULL, like real sparse columns.
        values.push(format!(
            "CASE WHEN (g + {i}) % 13 = 0 THEN NULL ELSE {value} END"
        ));
    }
    format!(
        "CREATE TABLE wide ({});\nINSERT INTO wide SELECT {} FROM generate_series(1, {rows}::int8) g",
        defs.join(", "),
        values.join(", ")
    )
}

/// Runs `pgbench ARGS... postgres` against the cluster over TCP.
async fn run_pgbench(cluster: &LocalCluster, args: &[&str]) -> Result<()> {
    let mut cmd = tokio::process::Command::new(cluster.bin_dir().join("pgbench"));
    cmd.args(args)
        .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string()])
        .args(["-U", "postgres", "postgres"])
        .env_remove("PGPASSWORD")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGDATABASE")
        .stdin(Stdio::null());
    let output = cmd.output().await.context("running pgbench")?;
    if !output.status.success() {
        bail!(
            "pgbench {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `UPDATE` of one `public.mixed` row (amount, active and payload change).
pub fn update_mixed_sql(id: u64) -> String {
    format!(
        "UPDATE mixed SET amount = coalesce(amount, 0) + 1, active = NOT active, \
         payload = payload || '{{\"u\": {id}}}' WHERE id = {id};"
    )
}

/// Where the CDC loads are in the key space, so that later loads touch existing rows.
#[derive(Debug)]
pub struct LoadState {
    /// Next unused `public.mixed` id.
    pub next_id: u64,
    /// Marker value of the last load.
    pub marker: i64,
}

impl LoadState {
    /// State right after [`populate`].
    pub fn new(sizes: &Sizes) -> Self {
        Self {
            next_id: sizes.rows + 1,
            marker: 0,
        }
    }
}

/// Runs one CDC load on the source, then bumps the marker. Returns the number of row changes.
pub async fn apply_load(
    workload: Workload,
    cluster: &LocalCluster,
    client: &Client,
    sizes: &Sizes,
    state: &mut LoadState,
) -> Result<u64> {
    let changes = match workload {
        Workload::Snapshot => bail!("the snapshot is not a CDC load"),
        // Only the marker below.
        Workload::Restart => 0,
        Workload::Inserts => {
            let mut done = 0;
            while done < sizes.inserts {
                let n = sizes.insert_batch.min(sizes.inserts - done);
                let from = state.next_id;
                client
                    .batch_execute(&insert_mixed_sql(from, from + n - 1))
                    .await
                    .context("insert load")?;
                state.next_id += n;
                done += n;
            }
            done
        }
        Workload::Updates => {
            let ids = (0..sizes.updates).map(|i| 1 + (i * 7919) % sizes.rows);
            run_in_transactions(client, ids.map(update_mixed_sql), sizes.tx_batch).await?;
            sizes.updates
        }
        Workload::Deletes => {
            let statements =
                (0..sizes.deletes).map(|i| format!("DELETE FROM mixed WHERE id = {};", 2 + 2 * i));
            run_in_transactions(client, statements, sizes.tx_batch).await?;
            sizes.deletes
        }
        Workload::Pgbench => {
            let clients = sizes.pgbench_clients.to_string();
            let tx = sizes.pgbench_tx_per_client.to_string();
            run_pgbench(cluster, &["-n", "-c", &clients, "-j", &clients, "-t", &tx]).await?;
            // TPC-B: three UPDATEs and one INSERT per transaction.
            4 * sizes.pgbench_clients * sizes.pgbench_tx_per_client
        }
        Workload::Bigtx | Workload::BigtxCommit => {
            // One statement outside BEGIN/COMMIT: one source transaction.
            let from = state.next_id;
            client
                .batch_execute(&insert_mixed_sql(from, from + sizes.bigtx_rows - 1))
                .await
                .context("big transaction load")?;
            state.next_id += sizes.bigtx_rows;
            sizes.bigtx_rows
        }
    };
    bump_marker(client, state).await?;
    Ok(changes)
}

/// Sets the source's marker to its next value in a transaction of its own, committed with
/// `synchronous_commit = on`: the walsender sends WAL only once it is flushed, so with the
/// server's `synchronous_commit = off` (the default without `--durable`) the marker, and the
/// end of the backlog before it, would reach the replicator only after the WAL writer's next
/// flush, up to a few hundred milliseconds later, counted as apply time. With `fsync = off`
/// the flush costs no disk write.
pub async fn bump_marker(client: &Client, state: &mut LoadState) -> Result<()> {
    state.marker += 1;
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL synchronous_commit = on; \
             UPDATE bench_marker SET seq = {} WHERE id = 1; COMMIT",
            state.marker
        ))
        .await
        .context("bumping the marker")?;
    Ok(())
}

/// Sends `statements` in transactions of `per_tx`, one round trip per transaction.
async fn run_in_transactions(
    client: &Client,
    statements: impl Iterator<Item = String>,
    per_tx: u64,
) -> Result<()> {
    let mut batch = String::from("BEGIN;");
    let mut in_batch = 0;
    for statement in statements {
        batch.push_str(&statement);
        in_batch += 1;
        if in_batch == per_tx {
            batch.push_str("COMMIT;");
            client.batch_execute(&batch).await.context("CDC load")?;
            batch = String::from("BEGIN;");
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        batch.push_str("COMMIT;");
        client.batch_execute(&batch).await.context("CDC load")?;
    }
    Ok(())
}

/// The marker value on the destination (`None` while the table or row is missing).
pub async fn marker(client: &Client) -> Option<i64> {
    client
        .query_opt("SELECT seq FROM public.bench_marker WHERE id = 1", &[])
        .await
        .ok()
        .flatten()
        .map(|row| row.get(0))
}
