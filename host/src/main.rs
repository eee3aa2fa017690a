//! The `pgmorph` command line: run a connector, show its status, reset it, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pgmorph::config::{Config, LogFormat};
use pgmorph::error_kind::ErrorKind;
use pgmorph::metrics::health::{self, Phase};
use pgmorph::metrics::MetricsError;
use pgmorph::pipeline::{self, Mode, ReloadOptions, RunError, RunOptions};
use pgmorph::plugin::reload::Fingerprint;
use pgmorph::state::control::{self, Request};
use pgmorph::state::local;
use pgmorph::state::owner::{self, OwnerError, Wait};
use pgmorph::state::StateStore;

mod cli;

use cli::{demo, logging, offsets, plugin_cli, source_setup, transform_setup, validate, wait};

/// Replicate one PostgreSQL database into another, reshaping it with WebAssembly plugins.
#[derive(Parser)]
#[command(name = "pgmorph", version, about)]
struct Cli {
    /// Log lines as `text` or `json` (default: `[log] format` of the config, else text).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a connector until SIGINT or SIGTERM.
    Run {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// How to start: snapshot modes as in SynchDB.
        #[arg(long, value_enum, default_value_t = Mode::Initial)]
        mode: Mode,
        /// Directory of `.wasm` plugins (overrides `plugin_dir` in the config).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Do not watch the plugin directory and config file; reload on SIGHUP only.
        #[arg(long)]
        no_watch: bool,
        /// When another process runs the connector, wait for it to end and take over
        /// (default: refuse after a few seconds, touching nothing).
        #[arg(long)]
        wait_for_lock: bool,
    },
    /// Print the connector's state row, counters and tables.
    Status {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Prepare the source: check it, create the publication, and with `--ddl` install the
    /// event triggers that stream schema changes (needs a superuser).
    SetupSource {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Install the DDL event triggers.
        #[arg(long)]
        ddl: bool,
        /// With `--ddl`: a table dropped on the source is dropped on the destination (default:
        /// kept).
        #[arg(long)]
        drop_tables: bool,
    },
    /// Remove the DDL event triggers from the source.
    TeardownSource {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Drop the connector's slot, publication and state rows (destination tables stay).
    Reset {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Ask a running connector to stop cleanly (between transactions).
    Stop {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask a running connector to stop consuming changes until `resume`.
    Pause {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask a paused connector to go on.
    Resume {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Copy one table again (truncate and re-copy) while the others keep streaming.
    Resync {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The source table, `schema.table`.
        #[arg(long)]
        table: String,
    },
    /// Set the destination's sequences to the source's values (for a cut-over).
    SyncSequences {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show or change the connector's last applied position.
    Offset {
        #[command(subcommand)]
        action: OffsetAction,
    },
    /// Zero the connector's counters.
    ResetStats {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Preview (with --dry-run) or build the mapped destination tables without rows.
    Schemasync {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print the mapping only; create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON (with --dry-run).
        #[arg(long)]
        json: bool,
        /// Directory of `.wasm` plugins (overrides `plugin_dir` in the config).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// When another process runs the connector, wait for it to end.
        #[arg(long)]
        wait_for_lock: bool,
    },
    /// Check a plugin or run it offline on sample rows.
    Plugin {
        #[command(subcommand)]
        action: plugin_cli::PluginAction,
    },
    /// Start throwaway servers, replicate sample data and show the result.
    Demo,
    /// Check the setup without changing anything; exit 2 when a check finds an error.
    Validate {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Directory of `.wasm` plugins (overrides `plugin_dir` in the config).
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Wait until the destination applied what the source had written when this started.
    Wait {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Bytes of WAL the destination may stay behind that position (0: all of it).
        #[arg(long)]
        lag: u64,
        /// Give up after this many seconds, exiting 2 (default: wait as long as it takes).
        #[arg(long)]
        timeout: Option<f64>,
    },
}

#[derive(Subcommand)]
enum OffsetAction {
    /// Print the last applied position and the slot's positions on the source.
    Get {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Set the position to resume from (connector stopped). Moving forward skips changes;
    /// moving back is impossible once the source confirmed them.
    Set {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The new position, e.g. `0/16B3748`.
        lsn: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = logging::init(cli.log_format, cli.command.config_path());
    // One thread: the CDC path is a short chain of tasks handing each other work (transport,
    // decode, destination writer); on one thread they hand over without cross-thread wakeups,
    // which halves pgmorph's CPU per change. The servers do the heavy lifting in their own
    // processes; compiling plugins runs on the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match log_format {
                LogFormat::Text => eprintln!("error: {}", one_line(&e)),
                LogFormat::Json => tracing::error!("{}", one_line(&e)),
            }
            exit_code(&e)
        }
    }
}

impl Command {
    /// The config file the command reads, if any.
    fn config_path(&self) -> Option<&std::path::Path> {
        match self {
            Command::Run { config, .. }
            | Command::Status { config, .. }
            | Command::SetupSource { config, .. }
            | Command::TeardownSource { config }
            | Command::Reset { config, .. }
            | Command::Stop { config }
            | Command::Pause { config }
            | Command::Resume { config }
            | Command::Resync { config, .. }
            | Command::SyncSequences { config }
            | Command::ResetStats { config }
            | Command::Schemasync { config, .. }
            | Command::Validate { config, .. }
            | Command::Wait { config, .. }
            | Command::Offset {
                action: OffsetAction::Get { config } | OffsetAction::Set { config, .. },
            } => Some(config),
            Command::Plugin { .. } | Command::Demo => None,
        }
    }
}

/// A connector's error exits with its kind's code (see [`ErrorKind::exit_code`]); any other
/// failure with 1.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    let kind = if let Some(run) = e.downcast_ref::<RunError>() {
        Some(run.kind())
    } else if e.downcast_ref::<OwnerError>().is_some() {
        Some(ErrorKind::RetryLater)
    } else if e.downcast_ref::<pgmorph::config::ConfigError>().is_some()
        || e.downcast_ref::<MetricsError>().is_some()
    {
        Some(ErrorKind::FixConfig)
    } else if e.downcast_ref::<cli::Unmet>().is_some() {
        return ExitCode::from(cli::Unmet::EXIT_CODE);
    } else {
        None
    };
    kind.map_or(ExitCode::FAILURE, |k| ExitCode::from(k.exit_code()))
}

fn one_line(e: &anyhow::Error) -> String {
    pgmorph::error_chain::one_line(e.as_ref())
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            config: path,
            mode,
            plugins,
            no_watch,
            wait_for_lock,
        } => {
            let config = Config::load(&path)?;
            // Serves while the connector runs; a taken port stops the start here.
            let _metrics = match &config.metrics {
                Some(m) => Some(pgmorph::metrics::serve(m.listen).await?),
                None => None,
            };
            let reload = ReloadOptions {
                config_path: Some(path),
                dir_override: plugins.clone(),
                watch: !no_watch,
                loaded: None,
            };
            run(
                &config,
                mode,
                plugins.as_deref(),
                Some(reload),
                wait_of(wait_for_lock),
            )
            .await
        }
        Command::Status { config, json } => status(&Config::load(&config)?, json).await,
        Command::SetupSource {
            config,
            ddl,
            drop_tables,
        } => source_setup::setup(&Config::load(&config)?, ddl, drop_tables).await,
        Command::TeardownSource { config } => source_setup::teardown(&Config::load(&config)?).await,
        Command::Reset { config, yes } => reset(&Config::load(&config)?, yes).await,
        Command::Stop { config } => request(&Config::load(&config)?, Request::Stop).await,
        Command::Pause { config } => request(&Config::load(&config)?, Request::Pause).await,
        Command::Resume { config } => request(&Config::load(&config)?, Request::Resume).await,
        Command::Resync { config, table } => {
            let config = Config::load(&config)?;
            let dest = destination(&config).await?;
            control::mark_for_resync(&dest, &config.name, &table).await?;
            control::request(&dest, &config.name, Request::Resync).await?;
            println!("table {table} will be copied again (now if the connector runs, else at its next start)");
            Ok(())
        }
        Command::SyncSequences { config } => {
            let count = pipeline::sequences::sync_config(&Config::load(&config)?).await?;
            println!("{count} sequences synced");
            Ok(())
        }
        Command::Offset { action } => offsets::run(action).await,
        Command::ResetStats { config } => {
            let config = Config::load(&config)?;
            control::reset_stats(&destination(&config).await?, &config.name).await?;
            println!("counters of connector {} reset", config.name);
            Ok(())
        }
        Command::Schemasync {
            config,
            dry_run,
            json,
            plugins,
            wait_for_lock,
        } => {
            let config = Config::load(&config)?;
            if dry_run {
                return plugin_cli::dry_run(&config, plugins.as_deref(), json).await;
            }
            let wait = wait_of(wait_for_lock);
            run(&config, Mode::Schemasync, plugins.as_deref(), None, wait).await
        }
        Command::Plugin { action } => plugin_cli::run(action),
        Command::Demo => demo::run().await,
        Command::Validate {
            config,
            json,
            plugins,
        } => validate::run(&Config::load(&config)?, plugins.as_deref(), json).await,
        Command::Wait {
            config,
            lag,
            timeout,
        } => {
            let timeout = timeout.map(std::time::Duration::from_secs_f64);
            wait::run(&Config::load(&config)?, lag, timeout).await
        }
    }
}

fn wait_of(wait_for_lock: bool) -> Wait {
    match wait_for_lock {
        true => Wait::UntilFree,
        false => Wait::Briefly,
    }
}

async fn run(
    config: &Config,
    mode: Mode,
    plugins: Option<&std::path::Path>,
    reload: Option<ReloadOptions>,
    wait: Wait,
) -> anyhow::Result<()> {
    // Read before building, so a file changed in between is reloaded, not missed.
    let reload = reload.map(|r| ReloadOptions {
        loaded: Some(Fingerprint::of_config(
            config,
            plugins,
            r.config_path.as_deref(),
        )),
        ..r
    });
    let transform = transform_setup::build(config, plugins)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stop requested");
        health::set(Phase::Stopping);
        let _ = tx.send(true);
    });
    pipeline::run(
        config,
        RunOptions {
            mode,
            shutdown: rx,
            transform,
            reload,
            wait,
        },
    )
    .await?;
    Ok(())
}

async fn destination(config: &Config) -> anyhow::Result<tokio_postgres::Client> {
    let dest = config.destination_connection()?;
    dest.connect("pgmorph")
        .await
        .with_context(|| format!("cannot connect to the destination {}", dest.describe()))
}

async fn source(config: &Config) -> anyhow::Result<tokio_postgres::Client> {
    let src = config.source_connection()?;
    src.connect("pgmorph")
        .await
        .with_context(|| format!("cannot connect to the source {}", src.describe()))
}

async fn request(config: &Config, what: Request) -> anyhow::Result<()> {
    control::request(&destination(config).await?, &config.name, what).await?;
    println!(
        "{what:?} requested for connector {}; a running connector acts on it between transactions",
        config.name
    );
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let dest = config.destination_connection()?;
    let client = match dest.connect("pgmorph status").await {
        Ok(client) => client,
        Err(e) => {
            // The destination cannot say; the last error kept on this machine can.
            if let Some(r) = local::read(&config.name) {
                let reconnecting = r.state == "reconnecting" && r.process_alive();
                println!("name            {}", r.name);
                if reconnecting {
                    println!(
                        "state           reconnecting (destination unreachable; attempt {}, recorded on this machine)",
                        r.retries
                    );
                } else {
                    println!(
                        "state           stopped (destination unreachable; recorded on this machine)"
                    );
                }
                println!("err             {}", r.err);
                println!("err_kind        {}", r.err_kind);
                let ended = if reconnecting { "" } else { " (ended)" };
                println!("pid             {}{ended}", r.pid);
            }
            return Err(anyhow::Error::new(e).context(format!(
                "cannot connect to the destination {}",
                dest.describe()
            )));
        }
    };
    let Some(s) = StateStore::status(&client, &config.name).await? else {
        anyhow::bail!(
            "connector {} has never run against {}",
            config.name,
            dest.describe()
        );
    };
    let mut s = s.with_owner(owner::holder(&client, &config.name).await?);
    if s.state == "crashed" {
        if let Some(r) = local::read(&config.name) {
            if r.state == "reconnecting" && r.process_alive() {
                // The process lost its destination session (and with it the lock) and is
                // connecting again.
                s.state = r.state;
                s.pid = r.pid as i32;
                s.retries.current = r.retries as i32;
            }
            s.err = format!("{} (recorded on this machine)", r.err);
            s.err_kind = Some(r.err_kind);
        }
    }
    let lag = slot_lag(config).await;
    let sequences = pgmorph::state::sequences::last_sequence_sync(&client, &config.name).await?;
    let ddl = pgmorph::state::ddl_history::summary(&client, &config.name)
        .await
        .unwrap_or_default();
    let snapshot = pgmorph::state::snapshot_progress::read(&client, &config.name).await?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["snapshot_progress"] = cli::snapshot_view::json(&snapshot);
        v["slot"] = lag.clone().unwrap_or(serde_json::Value::Null);
        v["sequences"] = serde_json::to_value(&sequences)?;
        v["source_ddl"] = serde_json::to_value(&ddl)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("name            {}", s.name);
    println!("connector_type  {}", s.connector_type);
    println!("pid             {}", s.pid);
    println!("stage           {}", s.stage);
    println!("state           {}", s.state);
    println!("err             {}", s.err);
    if let Some(kind) = &s.err_kind {
        println!("err_kind        {kind}");
    }
    if s.retries.total > 0 || s.retries.current > 0 {
        println!(
            "retries         {} in a row, {} in all; last at {}: {}",
            s.retries.current,
            s.retries.total,
            s.retries.last_at.as_deref().unwrap_or("-"),
            s.retries.last_error.as_deref().unwrap_or("-")
        );
    }
    println!(
        "owner           {}",
        s.owner
            .as_deref()
            .unwrap_or("none (no process runs the connector)")
    );
    println!(
        "last_offset     {}",
        s.last_offset
            .map(|o| o.to_string())
            .unwrap_or_else(|| "-".into())
    );
    if let serde_json::Value::Object(stats) = &s.stats {
        for key in [
            "transactions",
            "inserts",
            "updates",
            "deletes",
            "truncates",
            "skipped",
            "dead_lettered",
            "snapshot_rows",
            "last_change_at",
        ] {
            if let Some(v) = stats.get(key) {
                println!("{key:<15} {v}");
            }
        }
    }
    if let Some(last) = &ddl.last {
        println!("source_ddl      {} applied, last: {last}", ddl.applied);
    }
    if let Some(last) = &ddl.last_skipped {
        println!("ddl_skipped     {}, last: {last}", ddl.skipped);
    }
    match &lag {
        Some(l) => {
            println!("lag_bytes       {}", l["lag_bytes"]);
            println!("retained_wal    {}", l["retained_bytes"]);
            if let Some(failover) = l["failover"].as_bool() {
                println!("slot_failover   {failover}");
            }
        }
        None => println!("lag_bytes       (source not reachable)"),
    }
    match &sequences {
        Some(q) => println!("sequences       {} synced at {}", q.sequences, q.synced_at),
        None => println!("sequences       never synced"),
    }
    if !s.plugins.is_empty() {
        println!();
        println!(
            "{:<24} {:<14} {:<32} {:>8} {:>7} error",
            "plugin", "hash", "loaded at", "reloads", "failed"
        );
        for p in &s.plugins {
            let text = |k: &str| p[k].as_str().unwrap_or("-").to_string();
            println!(
                "{:<24} {:<14} {:<32} {:>8} {:>7} {}",
                text("plugin")
                    + if p["active"] == true {
                        ""
                    } else {
                        " (inactive)"
                    },
                text("hash"),
                text("loaded_at"),
                p["reloads"],
                p["failed_reloads"],
                text("last_error")
            );
        }
    }
    if !s.tables.is_empty() {
        println!();
        println!(
            "{:<32} {:<32} {:<10} {:>12}",
            "source table", "destination table", "phase", "rows copied"
        );
        for t in &s.tables {
            println!(
                "{:<32} {:<32} {:<10} {:>12}",
                t.source_table, t.dest_table, t.phase, t.rows_copied
            );
        }
    }
    cli::snapshot_view::print(&snapshot);
    Ok(())
}

/// The slot's distance to the source's current WAL position, if the source answers.
async fn slot_lag(config: &Config) -> Option<serde_json::Value> {
    let client = source(config).await.ok()?;
    let row = client
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, active, \
                    (to_jsonb(s) ->> 'failover')::bool \
             FROM pg_replication_slots s WHERE slot_name = $1",
            &[&config.slot_name()],
        )
        .await
        .ok()??;
    Some(serde_json::json!({
        "name": config.slot_name(),
        "lag_bytes": row.get::<_, Option<i64>>(0),
        "retained_bytes": row.get::<_, Option<i64>>(1),
        "active": row.get::<_, bool>(2),
        // PostgreSQL 17+: whether standbys keep a copy of the slot (`source.failover_slot`).
        "failover": row.get::<_, Option<bool>>(3),
    }))
}

async fn reset(config: &Config, yes: bool) -> anyhow::Result<()> {
    let slot = config.slot_name();
    if !yes {
        use std::io::Write;
        print!(
            "This drops replication slot, publication {slot} and DDL triggers on the source and the state of connector {} \
             (destination tables stay). Continue? [y/N] ",
            config.name
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("reset cancelled");
        }
    }
    // The connector's lock first: a running connector is never reset under its feet.
    let dst = config.destination_connection()?;
    let dest = dst
        .connect("pgmorph reset")
        .await
        .with_context(|| format!("cannot connect to the destination {}", dst.describe()))?;
    owner::claim_for_command(&dest, &config.name).await?;
    let src = config.source_connection()?;
    let source = src
        .connect("pgmorph reset")
        .await
        .with_context(|| format!("cannot connect to the source {}", src.describe()))?;
    pgmorph::source::setup::drop_slot(&source, &slot).await?;
    pgmorph::source::setup::drop_publication(&source, &slot).await?;
    pgmorph::source::ddl_trigger::remove(&source, &config.name).await?;
    if StateStore::status(&dest, &config.name).await?.is_some() {
        StateStore::delete(&dest, &config.name).await?;
    }
    println!("connector {} reset", config.name);
    Ok(())
}
