//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::live::LiveSettings;
use crate::workload::Sizes;

/// Compare pgmorph with PostgreSQL's native logical replication and a plain COPY pipe on the
/// same machine: initial snapshot throughput, CDC backlog-drain (apply) throughput, the drain
/// of one big source transaction, and replication lag under a steady live load.
#[derive(Debug, Parser)]
#[command(name = "pgmorph-bench", version, about)]
pub struct Args {
    /// Rows of the mixed-type table `public.mixed` in the snapshot.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Rows of the wide table `public.wide` (default: rows / 4).
    #[arg(long)]
    pub wide_rows: Option<u64>,
    /// Columns of `public.wide`, the `id` key included.
    #[arg(long, default_value_t = 30)]
    pub wide_cols: usize,
    /// `pgbench -i` scale factor (100,000 `pgbench_accounts` rows per unit).
    #[arg(long, default_value_t = 1)]
    pub pgbench_scale: u32,
    /// CDC: rows inserted into `public.mixed`, in transactions of `--insert-batch` rows.
    #[arg(long, default_value_t = 100_000)]
    pub cdc_inserts: u64,
    /// CDC: rows per insert transaction.
    #[arg(long, default_value_t = 1_000)]
    pub insert_batch: u64,
    /// CDC: single-row UPDATEs of `public.mixed`, grouped in transactions of `--tx-batch`.
    #[arg(long, default_value_t = 20_000)]
    pub cdc_updates: u64,
    /// CDC: single-row DELETEs from `public.mixed` (at most rows / 2), grouped likewise.
    #[arg(long, default_value_t = 20_000)]
    pub cdc_deletes: u64,
    /// CDC: single-row statements per transaction for the update and delete workloads.
    #[arg(long, default_value_t = 100)]
    pub tx_batch: u64,
    /// CDC: pgbench TPC-B transactions in total (4 row changes each).
    #[arg(long, default_value_t = 4_000)]
    pub pgbench_tx: u64,
    /// CDC: pgbench client connections.
    #[arg(long, default_value_t = 2)]
    pub pgbench_clients: u64,
    /// Big transaction: rows inserted into `public.mixed` by ONE source transaction while the
    /// replicator is stopped (the `bigtx` workload), then drained.
    #[arg(long, default_value_t = 100_000)]
    pub bigtx_rows: u64,
    /// Live lag: seconds of steady load per live phase; 0 skips the live phases. A live
    /// phase runs for each of the `inserts`, `updates` and `pgbench` workloads selected.
    #[arg(long, default_value_t = 5)]
    pub live_secs: u64,
    /// Live lag: row changes per second the load generator drives on the source.
    #[arg(long, default_value_t = 5_000)]
    pub live_rate: u64,
    /// Live lag: row changes per source transaction for the insert and update loads (a
    /// pgbench transaction always has 4).
    #[arg(long, default_value_t = 10)]
    pub live_tx_changes: u64,
    /// Live lag: milliseconds between heartbeats (`UPDATE bench_marker`, one transaction each).
    #[arg(long, default_value_t = 10)]
    pub heartbeat_ms: u64,
    /// Live lag: also write every heartbeat's lag to this CSV file (run, variant, load,
    /// heartbeat, ms since the load started, lag ms).
    #[arg(long)]
    pub lag_csv: Option<PathBuf>,
    /// Repetitions of every variant (interleaved); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Tables copied at once by every variant (pgmorph `snapshot.parallel`, native
    /// `max_sync_workers_per_subscription`, COPY pipe workers).
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// Destination connections pgmorph applies changes on (`apply.parallel`).
    #[arg(long, default_value_t = 1)]
    pub apply_parallel: usize,
    /// Variants to run (the plugin variants also need `--plugins-dir`). Default: native,
    /// copy, pgmorph and the plugin variants, plus pgmorph-sync-commit with `--durable`.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub variants: Option<Vec<VariantKind>>,
    /// Workloads to run (`snapshot` always runs: the CDC workloads need it). `inserts`,
    /// `updates` and `pgbench` also get a live phase (see `--live-secs`).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Workload::all())]
    pub workloads: Vec<Workload>,
    /// Directory with the built plugin components (`pgmorph_plugin_<name>.wasm` or
    /// `<name>.wasm`), e.g. `target/wasm-plugins/wasm32-wasip2/release`. Without it the
    /// plugin variants are skipped.
    #[arg(long)]
    pub plugins_dir: Option<PathBuf>,
    /// The pgmorph binary to measure (default: build and use `target/release/pgmorph`).
    #[arg(long)]
    pub pgmorph: Option<PathBuf>,
    /// Do not run `cargo build --release -p pgmorph` before starting.
    #[arg(long)]
    pub no_build: bool,
    /// How every replicator (native subscription, pgmorph, pg_recvlogical) connects to the
    /// two local servers: TCP on 127.0.0.1, or their Unix-domain sockets.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Keep crash safety on both servers (fsync, synchronous_commit, full_page_writes). Adds
    /// the pgmorph-sync-commit variant to the default variants.
    #[arg(long)]
    pub durable: bool,
    /// Give up waiting for a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Sizes and parallelism for a kind of machine (`many-core`: see bench/README.md);
    /// options given on the command line win.
    #[arg(long, value_enum)]
    pub preset: Option<crate::preset::Preset>,
}

impl Args {
    /// The data sizes, with defaults filled in and limits applied.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            rows: self.rows.max(1),
            wide_rows: self.wide_rows.unwrap_or(self.rows / 4).max(1),
            wide_cols: self.wide_cols.max(2),
            pgbench_scale: self.pgbench_scale.max(1),
            inserts: self.cdc_inserts,
            insert_batch: self.insert_batch.max(1),
            updates: self.cdc_updates,
            deletes: self.cdc_deletes.min(self.rows / 2),
            tx_batch: self.tx_batch.max(1),
            pgbench_clients: self.pgbench_clients.max(1),
            pgbench_tx_per_client: self.pgbench_tx / self.pgbench_clients.max(1),
            bigtx_rows: self.bigtx_rows.max(1),
        }
    }

    /// The variants to run: the ones asked for, or the defaults for `--durable`.
    pub fn variants(&self) -> Vec<VariantKind> {
        match &self.variants {
            Some(kinds) => kinds.clone(),
            None => {
                let mut kinds = VariantKind::all();
                if self.durable {
                    kinds.push(VariantKind::PgmorphSyncCommit);
                }
                kinds
            }
        }
    }

    /// The live-lag settings, `None` when `--live-secs 0` or no live load is selected.
    pub fn live(&self) -> Option<LiveSettings> {
        let loads: Vec<Workload> = Workload::all()
            .into_iter()
            .filter(|w| w.has_live_phase() && self.workloads.contains(w))
            .collect();
        (self.live_secs > 0 && !loads.is_empty()).then(|| LiveSettings {
            loads,
            duration: Duration::from_secs(self.live_secs),
            rate: self.live_rate.max(1),
            tx_changes: self.live_tx_changes.max(1),
            heartbeat: Duration::from_millis(self.heartbeat_ms.max(1)),
        })
    }

    /// The phase timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// How the replicators connect to the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// TCP on 127.0.0.1, as between machines.
    Tcp,
    /// Unix-domain sockets: cheaper per message on one machine.
    Unix,
    /// TCP on 127.0.0.1 with TLS (`sslmode=require`; both servers get a certificate made for
    /// the run): what encryption costs.
    Tls,
}

/// One way of moving the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum VariantKind {
    /// PostgreSQL's own logical replication (publication + subscription).
    Native,
    /// `COPY ... TO STDOUT` piped into `COPY ... FROM STDIN`: the snapshot speed limit.
    Copy,
    /// The pgmorph release binary without plugins.
    Pgmorph,
    /// pgmorph with the `passthrough` plugin asking for every row (bare Wasm boundary cost).
    PgmorphPassthrough,
    /// pgmorph with the chain rename -> type-remap -> mask.
    PgmorphChain,
    /// pgmorph without plugins, committing applied transactions with the destination's own
    /// `synchronous_commit` (the other pgmorph variants set `synchronous_commit_off`, as
    /// native apply does). Differs from `pgmorph` only with `--durable`.
    PgmorphSyncCommit,
    /// pgmorph without plugins and with `read_batching = "off"`: it reads every message of the
    /// replication stream as it arrives (not in the defaults).
    PgmorphUnbatched,
    /// pgmorph without plugins and with `binary_values = false`: the source sends every value
    /// as text (not in the defaults).
    PgmorphText,
    /// `pg_recvlogical` reading each CDC backlog through `pgoutput` into `/dev/null`: a
    /// consumer that applies nothing (not in the defaults). No snapshot.
    PgoutputRead,
}

impl VariantKind {
    /// The default variants, in run order.
    pub fn all() -> Vec<VariantKind> {
        vec![
            VariantKind::Native,
            VariantKind::Copy,
            VariantKind::Pgmorph,
            VariantKind::PgmorphPassthrough,
            VariantKind::PgmorphChain,
        ]
    }

    /// The name printed in the table.
    pub fn label(self) -> &'static str {
        match self {
            VariantKind::Native => "native",
            VariantKind::Copy => "copy-pipe",
            VariantKind::Pgmorph => "pgmorph",
            VariantKind::PgmorphPassthrough => "pgmorph+passthrough",
            VariantKind::PgmorphChain => "pgmorph+chain",
            VariantKind::PgmorphSyncCommit => "pgmorph sync-commit",
            VariantKind::PgmorphUnbatched => "pgmorph unbatched",
            VariantKind::PgmorphText => "pgmorph text-values",
            VariantKind::PgoutputRead => "pgoutput-read",
        }
    }

    /// Whether this variant runs pgmorph with plugins.
    pub fn uses_plugins(self) -> bool {
        matches!(
            self,
            VariantKind::PgmorphPassthrough | VariantKind::PgmorphChain
        )
    }
}

/// One measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// Initial copy of every table.
    Snapshot,
    /// Fixed cost of a pause/resume cycle: only the marker changes while stopped.
    Restart,
    /// Backlog of inserts in large transactions.
    Inserts,
    /// Backlog of single-row updates in small transactions.
    Updates,
    /// Backlog of single-row deletes in small transactions.
    Deletes,
    /// Backlog of pgbench TPC-B transactions.
    Pgbench,
    /// Backlog of one big transaction (`--bigtx-rows` inserts).
    Bigtx,
    /// One big transaction (`--bigtx-rows` inserts) written while the replicator runs, timed
    /// from its commit until the destination has it.
    BigtxCommit,
}

impl Workload {
    /// Every workload, in run order.
    pub fn all() -> Vec<Workload> {
        vec![
            Workload::Snapshot,
            Workload::Restart,
            Workload::Inserts,
            Workload::Updates,
            Workload::Deletes,
            Workload::Pgbench,
            Workload::Bigtx,
            Workload::BigtxCommit,
        ]
    }

    /// The name printed in the table.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Snapshot => "snapshot",
            Workload::Restart => "cdc restart",
            Workload::Inserts => "cdc inserts",
            Workload::Updates => "cdc updates",
            Workload::Deletes => "cdc deletes",
            Workload::Pgbench => "cdc pgbench",
            Workload::Bigtx => "cdc big tx",
            Workload::BigtxCommit => "big tx after commit",
        }
    }

    /// The name of its live phase in the lag table.
    pub fn live_label(self) -> &'static str {
        match self {
            Workload::Inserts => "live inserts",
            Workload::Updates => "live updates",
            Workload::Pgbench => "live pgbench",
            _ => self.label(),
        }
    }

    /// Whether the workload also runs as a steady live load (`--live-secs`).
    pub fn has_live_phase(self) -> bool {
        matches!(
            self,
            Workload::Inserts | Workload::Updates | Workload::Pgbench
        )
    }
}
