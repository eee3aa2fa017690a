//! The version matrix's own check: each side of a [`Pair`] runs the binaries chosen for it
//! (`PGMORPH_PG_BINDIR`, `PGMORPH_SOURCE_PG_BINDIR`, `PGMORPH_DEST_PG_BINDIR`), and the
//! majors `scripts/test-matrix` expects (`PGMORPH_EXPECT_SOURCE_MAJOR`,
//! `PGMORPH_EXPECT_DEST_MAJOR`) are the ones serving.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use pgmorph::cluster::{find_bin_dir_for, ServerRole};
use pgmorph_e2e::{server_major, Pair};

/// The major version `postgres --version` of `bin_dir` reports ("postgres (PostgreSQL) 18.4").
fn binary_major(bin_dir: &Path) -> anyhow::Result<u32> {
    let output = Command::new(bin_dir.join("postgres"))
        .arg("--version")
        .output()
        .with_context(|| format!("running {}/postgres --version", bin_dir.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .last()
        .context("no version printed")?;
    let major = version.split(['.', 'b', 'r']).next().unwrap_or_default();
    major
        .parse()
        .with_context(|| format!("version {version:?}"))
}

/// The major `env` asks for, when set.
fn expected(env: &str) -> anyhow::Result<Option<u32>> {
    match std::env::var(env) {
        Ok(text) => Ok(Some(text.parse().with_context(|| format!("${env}"))?)),
        Err(_) => Ok(None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_runs_the_binaries_chosen_for_it() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    for (role, client, env) in [
        (ServerRole::Source, &src, "PGMORPH_EXPECT_SOURCE_MAJOR"),
        (ServerRole::Destination, &dst, "PGMORPH_EXPECT_DEST_MAJOR"),
    ] {
        let serving = server_major(client).await?;
        let chosen = binary_major(&find_bin_dir_for(role)?)?;
        assert_eq!(serving, chosen, "{role:?} runs the binaries chosen for it");
        if let Some(want) = expected(env)? {
            assert_eq!(serving, want, "{role:?} serves the major ${env} asks for");
        }
        assert!(
            serving >= 14,
            "{role:?}: PostgreSQL {serving} is below the supported 14"
        );
    }
    Ok(())
}
