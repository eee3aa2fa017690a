//! Variants (c)-(f): the pgmorph release binary as a separate process.
//!
//! Snapshot: start `pgmorph run` until `pgmorph.state.stage = 'change data capture'`.
//! CDC: SIGTERM and wait for the exit, load, start it again (it resumes from its slot).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use tempfile::TempDir;

use super::{plugins, Ctx, Replicator};
use crate::cli::VariantKind;
use crate::pair::Pair;
use crate::process::PgmorphProcess;
use crate::report::ProcUsage;
use crate::verify::TableCheck;
use crate::wait::Deadline;
use crate::workload::TABLES;

/// Connector name (slot and publication `pgmorph_bench`).
const NAME: &str = "bench";

/// pgmorph, with the plugins of the variant.
pub struct Pgmorph {
    kind: VariantKind,
    bin: PathBuf,
    parallel: usize,
    apply_parallel: usize,
    plugins_dir: Option<PathBuf>,
    /// Holds the config, the plugin copies and the log.
    dir: TempDir,
    process: Option<PgmorphProcess>,
}

impl Pgmorph {
    /// A replicator for `kind`, not started yet.
    pub fn new(ctx: &Ctx, kind: VariantKind) -> Result<Self> {
        if kind.uses_plugins() && ctx.plugins_dir.is_none() {
            bail!("{} needs --plugins-dir", kind.label());
        }
        Ok(Self {
            kind,
            bin: ctx.pgmorph.clone(),
            parallel: ctx.parallel,
            apply_parallel: ctx.apply_parallel,
            plugins_dir: ctx.plugins_dir.clone(),
            dir: tempfile::Builder::new()
                .prefix("pgmorph-bench-")
                .tempdir()?,
            process: None,
        })
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn plugin_path(&self) -> Option<PathBuf> {
        self.kind
            .uses_plugins()
            .then(|| self.dir.path().join("plugins"))
    }

    fn start(&mut self) -> Result<()> {
        let process = PgmorphProcess::spawn(
            &self.bin,
            &self.config_path(),
            self.plugin_path().as_deref(),
            &self.dir.path().join("pgmorph.log"),
        )?;
        self.process = Some(process);
        Ok(())
    }

    /// The connector config for this pair.
    fn config(&self, pair: &Pair) -> String {
        let tables: Vec<String> = TABLES.iter().map(|t| format!("\"{t}\"")).collect();
        let mut text = format!(
            "name = \"{NAME}\"\n\
             [source]\nurl = \"{}\"\ntables = [{}]\nread_batching = \"{}\"\nbinary_values = {}\n\
             [destination]\nurl = \"{}\"\nschema = \"public\"\n\
             # true as native apply commits with synchronous_commit=off; false for sync-commit\n\
             synchronous_commit_off = {}\n\
             [snapshot]\nparallel = {}\n[apply]\nparallel = {}\n",
            pair.url_of(&pair.source),
            tables.join(", "),
            if self.kind == VariantKind::PgmorphUnbatched {
                "off"
            } else {
                "auto"
            },
            self.kind != VariantKind::PgmorphText,
            pair.url_of(&pair.dest),
            self.kind != VariantKind::PgmorphSyncCommit,
            self.parallel,
            self.apply_parallel
        );
        if let Some(set) = plugins::set_for(self.kind) {
            text.push_str(set.toml);
        }
        text
    }
}

/// Compiles each component of `dir` once into pgmorph's cache (`pgmorph plugin check`, with
/// the plugin's config from `set_toml`), so that no timed run pays for compiling a plugin it
/// sees for the first time.
fn warm_compile_cache(bin: &Path, dir: &Path, set_toml: &str) -> Result<()> {
    let set: toml::Table = toml::from_str(set_toml)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let mut check = std::process::Command::new(bin);
        check.args(["plugin", "check"]).arg(&path);
        let config = set
            .get("plugins")
            .and_then(|p| p.get(stem))
            .and_then(|p| p.get("config"));
        if let Some(config) = config {
            check
                .arg("--plugin-config")
                .arg(serde_json::to_string(config)?);
        }
        let out = check.output()?;
        if !out.status.success() {
            bail!(
                "pgmorph plugin check {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

impl Replicator for Pgmorph {
    async fn prepare(&mut self, pair: &Pair) -> Result<()> {
        std::fs::write(self.config_path(), self.config(pair))?;
        if let (Some(set), Some(from), Some(to)) = (
            plugins::set_for(self.kind),
            &self.plugins_dir,
            self.plugin_path(),
        ) {
            plugins::install(&set, from, &to)?;
            warm_compile_cache(&self.bin, &to, set.toml)?;
        }
        Ok(())
    }

    async fn snapshot(&mut self, pair: &Pair, deadline: &Deadline) -> Result<()> {
        self.start()?;
        loop {
            self.check(pair).await?;
            let stage: Option<String> = pair
                .dst
                .query_opt("SELECT stage FROM pgmorph.state WHERE name = $1", &[&NAME])
                .await
                .ok()
                .flatten()
                .map(|row| row.get(0));
            if stage.as_deref() == Some("change data capture") {
                return Ok(());
            }
            deadline.tick().await?;
        }
    }

    async fn pause(&mut self, _pair: &Pair, _deadline: &Deadline) -> Result<()> {
        if let Some(process) = self.process.take() {
            process.stop().await?;
        }
        Ok(())
    }

    async fn resume(&mut self, _pair: &Pair) -> Result<()> {
        self.start()
    }

    async fn restart(&mut self, pair: &Pair, deadline: &Deadline) -> Result<()> {
        self.pause(pair, deadline).await?;
        self.resume(pair).await
    }

    async fn check(&mut self, _pair: &Pair) -> Result<()> {
        match &mut self.process {
            Some(process) => process.check_alive(),
            None => bail!("pgmorph is not running"),
        }
    }

    /// With several apply connections: every connection's position (the connector's and the
    /// lanes') has reached the furthest one, read when the marker was seen.
    async fn settled(&self, pair: &Pair) -> Result<bool> {
        if self.apply_parallel < 2 {
            return Ok(true);
        }
        let row = pair
            .dst
            .query_one(
                "WITH p AS (SELECT (last_offset ->> 'lsn')::pg_lsn AS lsn FROM pgmorph.state \
                   WHERE name = $1 UNION ALL SELECT lsn FROM pgmorph.apply_lanes WHERE connector = $1) \
                 SELECT min(lsn) >= max(lsn) FROM p",
                &[&NAME],
            )
            .await?;
        Ok(row.get::<_, Option<bool>>(0).unwrap_or(true))
    }

    fn usage(&self) -> Option<ProcUsage> {
        self.process.as_ref().and_then(PgmorphProcess::usage)
    }

    async fn check_transform(&self, pair: &Pair) -> Result<()> {
        if self.kind == VariantKind::PgmorphChain {
            plugins::check_chain_applied(pair).await?;
        }
        Ok(())
    }

    fn checks(&self) -> Vec<TableCheck> {
        plugins::checks_for(self.kind)
    }

    async fn finish(&mut self) -> Result<()> {
        if let Some(process) = self.process.take() {
            process.stop().await?;
        }
        if let Some(keep) = std::env::var_os("PGMORPH_BENCH_KEEP_LOG") {
            std::fs::copy(self.dir.path().join("pgmorph.log"), keep)?;
        }
        Ok(())
    }
}
