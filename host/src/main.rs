//! The `pgmorph` command line: run a connector, show its status, reset it, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pgmorph::config::Config;
use pgmorph::pipeline::{self, Mode, RunOptions};
use pgmorph::state::StateStore;

mod demo;
mod transform_setup;

/// Replicate one PostgreSQL database into another, reshaping it with WebAssembly plugins.
#[derive(Parser)]
#[command(name = "pgmorph", version, about)]
struct Cli {
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
    /// Drop the connector's slot, publication and state rows (destination tables stay).
    Reset {
        /// The connector's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Start throwaway servers, replicate sample data and show the result.
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGMORPH_LOG")
                .unwrap_or_else(|_| "info,tokio_postgres=warn,pgwire_replication=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        if !out.iter().any(|o| o.contains(&p)) {
            out.push(p);
        }
    }
    out.join(": ").replace('\n', " ")
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            config,
            mode,
            plugins,
        } => {
            let config = Config::load(&config)?;
            let transform = transform_setup::build(&config, plugins.as_deref())?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("stop requested");
                let _ = tx.send(true);
            });
            pipeline::run(
                &config,
                RunOptions {
                    mode,
                    shutdown: rx,
                    transform,
                },
            )
            .await?;
            Ok(())
        }
        Command::Status { config, json } => status(&Config::load(&config)?, json).await,
        Command::Reset { config, yes } => reset(&Config::load(&config)?, yes).await,
        Command::Demo => demo::run().await,
    }
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
    let client = dest
        .connect("pgmorph status")
        .await
        .with_context(|| format!("cannot connect to the destination {}", dest.describe()))?;
    let Some(s) = StateStore::status(&client, &config.name).await? else {
        anyhow::bail!(
            "connector {} has never run against {}",
            config.name,
            dest.describe()
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("name            {}", s.name);
    println!("connector_type  {}", s.connector_type);
    println!("pid             {}", s.pid);
    println!("stage           {}", s.stage);
    println!("state           {}", s.state);
    println!("err             {}", s.err);
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
    Ok(())
}

async fn reset(config: &Config, yes: bool) -> anyhow::Result<()> {
    let slot = config.slot_name();
    if !yes {
        use std::io::Write;
        print!(
            "This drops replication slot and publication {slot} on the source and the state of connector {} \
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
    let src = config.source_connection()?;
    let source = src
        .connect("pgmorph reset")
        .await
        .with_context(|| format!("cannot connect to the source {}", src.describe()))?;
    pgmorph::source::setup::drop_slot(&source, &slot).await?;
    pgmorph::source::setup::drop_publication(&source, &slot).await?;
    let dst = config.destination_connection()?;
    let dest = dst
        .connect("pgmorph reset")
        .await
        .with_context(|| format!("cannot connect to the destination {}", dst.describe()))?;
    if StateStore::status(&dest, &config.name).await?.is_some() {
        StateStore::delete(&dest, &config.name).await?;
    }
    println!("connector {} reset", config.name);
    Ok(())
}
