//! `pgmorph-bench`: runs the same workload through PostgreSQL's native logical replication,
//! a plain COPY pipe and pgmorph (optionally with plugins) on fresh throwaway clusters, and
//! prints medians. See `bench/README.md`.

mod cli;
mod live;
mod pair;
mod preset;
mod process;
mod report;
mod tls;
mod variants;
mod verify;
mod wait;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use cli::{Args, VariantKind, Workload};
use report::Measurement;
use variants::Ctx;

fn main() -> ExitCode {
    let args = preset::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C the benchmark future is dropped, which stops pgmorph and the clusters.
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = bench(args) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> Result<()> {
    let mut notes = Vec::new();
    let pgmorph = match &args.pgmorph {
        Some(path) => path.clone(),
        None => build_pgmorph(args.no_build)?,
    };
    let begun = Instant::now();
    let mut kinds = Vec::new();
    for kind in args.variants() {
        if kinds.contains(&kind) {
            continue;
        }
        match plugin_problem(kind, args.plugins_dir.as_deref()) {
            Some(problem) => notes.push(format!("{} skipped: {problem}", kind.label())),
            None => kinds.push(kind),
        }
    }
    if kinds.contains(&VariantKind::PgmorphSyncCommit) && !args.durable {
        notes.push(format!(
            "without --durable both servers run with synchronous_commit=off, so {} is the same \
             as pgmorph",
            VariantKind::PgmorphSyncCommit.label()
        ));
    }
    let ctx = Ctx {
        sizes: args.sizes(),
        transport: args.transport,
        durable: args.durable,
        parallel: args.parallel.max(1),
        apply_parallel: args.apply_parallel.max(1),
        timeout: args.timeout(),
        cdc: Workload::all()
            .into_iter()
            .filter(|w| *w != Workload::Snapshot && args.workloads.contains(w))
            .collect(),
        live: args.live(),
        lag_csv: args.lag_csv.clone(),
        pgmorph,
        plugins_dir: args.plugins_dir.clone(),
    };
    if let Some(path) = &ctx.lag_csv {
        live::lag_csv::create(path)?;
    }
    let live = match &ctx.live {
        Some(live) => format!(
            "{} for {} s each at {} changes/s, {} changes/tx, heartbeat every {} ms",
            live.loads
                .iter()
                .filter_map(|w| w.to_possible_value())
                .map(|v| v.get_name().to_owned())
                .collect::<Vec<_>>()
                .join(", "),
            live.duration.as_secs(),
            live.rate,
            live.tx_changes,
            live.heartbeat.as_millis()
        ),
        None => "none".to_owned(),
    };
    eprintln!(
        "pgmorph-bench: {} run(s) of {} | mixed {} rows, wide {} rows x {} cols, pgbench scale {} | \
         CDC {} | big tx {} rows | live {} | durable {} | transport {:?} | pgmorph {}",
        args.runs,
        kinds.iter().map(|k| k.label()).collect::<Vec<_>>().join(", "),
        ctx.sizes.rows,
        ctx.sizes.wide_rows,
        ctx.sizes.wide_cols,
        ctx.sizes.pgbench_scale,
        ctx.cdc.iter().map(|w| w.label()).collect::<Vec<_>>().join(", "),
        ctx.sizes.bigtx_rows,
        live,
        ctx.durable,
        ctx.transport,
        ctx.pgmorph.display()
    );

    let mut results: Vec<Measurement> = Vec::new();
    for run in 1..=args.runs.max(1) {
        let mut failed = Vec::new();
        for &kind in &kinds {
            match variants::run_once(kind, &ctx, run).await {
                Ok(measurements) => results.extend(measurements),
                // Plugin variants depend on work in progress elsewhere: note and go on,
                // unless the data came out wrong.
                Err(e) if kind.uses_plugins() && e.downcast_ref::<verify::Mismatch>().is_none() => {
                    eprintln!("{} failed: {e:#}", kind.label());
                    notes.push(format!(
                        "{} failed in run {run} and was dropped: {e:#}",
                        kind.label()
                    ));
                    failed.push(kind);
                }
                Err(e) => return Err(e.context(format!("{} run {run}", kind.label()))),
            }
        }
        kinds.retain(|k| !failed.contains(k));
    }

    println!();
    println!(
        "Medians of {} run(s); 'vs native' = native median time / this median time (>1 = faster \
         than native); MB/s = source heap+TOAST bytes / time.",
        args.runs.max(1)
    );
    print!("{}", report::table(&results));
    let live_table = report::live_table(&results, ctx.live.as_ref().map_or(0, |l| l.rate));
    if !live_table.is_empty() {
        println!();
        println!(
            "Live load, medians of {} run(s): lag = when a heartbeat (UPDATE bench_marker, every \
             {} ms) was first seen on the destination - when its commit returned on the source; \
             pgmorph CPU % = CPU seconds / load seconds.",
            args.runs.max(1),
            ctx.live.as_ref().map_or(0, |l| l.heartbeat.as_millis())
        );
        print!("{live_table}");
    }
    for note in &notes {
        println!("note: {note}");
    }
    println!(
        "all destinations verified equal to their sources after every phase; {:.0} s (without the build)",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Why a plugin variant cannot run, if it cannot.
fn plugin_problem(kind: VariantKind, plugins_dir: Option<&Path>) -> Option<String> {
    let set = variants::plugins::set_for(kind)?;
    let Some(dir) = plugins_dir else {
        return Some("no --plugins-dir given".into());
    };
    variants::plugins::check_available(&set, dir)
        .err()
        .map(|e| e.to_string())
}

/// Builds `target/release/pgmorph` (unless `no_build`) and returns its path.
fn build_pgmorph(no_build: bool) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench crate has no parent directory")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("pgmorph");
    if !no_build {
        eprintln!("building the pgmorph release binary (cargo build --release -p pgmorph)...");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "pgmorph", "--bin", "pgmorph"])
            .current_dir(&root)
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release -p pgmorph failed");
        }
    }
    if !bin.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p pgmorph` or pass --pgmorph",
            bin.display()
        );
    }
    Ok(bin)
}
