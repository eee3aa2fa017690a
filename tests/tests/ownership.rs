//! One process runs a connector at a time: a second process, in any mode, refuses before it
//! touches the destination, the slot or the state row, and a process waiting for the lock takes
//! over when the owner is killed, resuming exactly where it left off.

mod plugin_support;

use std::process::Command;
use std::time::Duration;

use pgmorph_e2e::{
    duplicated, pgmorph_bin, run_bin, spawn_bin, wait_same, wait_until, Load, Pair, DEADLINE,
};

const SCHEMA: &str = "
CREATE TABLE events (writer int, seq int, payload text);
ALTER TABLE events REPLICA IDENTITY FULL;
INSERT INTO events SELECT 0, -g, 'before' FROM generate_series(1, 500) g;
";

const TABLES: [(&str, &str); 1] = [("public.events", "postgres.events")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_touches_nothing_and_a_waiting_one_takes_over() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (args, log) = plugin_support::binary_run(&pair, "owned", "schema = \"public\"", &[])?;
    let config = args[2].clone();
    let load = Load::start(
        pair.source.connect("postgres").await?,
        Duration::from_millis(5),
    );

    let mut first = spawn_bin(&args, &log);
    let streaming = |pid: u32| {
        format!("SELECT state = 'polling' AND pid = {pid} FROM pgmorph.state WHERE name = 'owned'")
    };
    wait_until(&dst, &streaming(first.id()), None).await?;

    // Every mode refuses while the first process runs, all at once.
    let modes = ["initial", "initial_only", "no_data", "always"];
    let mut others: Vec<_> = modes
        .iter()
        .map(|mode| {
            Command::new(pgmorph_bin())
                .args(["run", "--config", &config, "--mode", mode])
                .env("PGMORPH_LOG", "warn")
                .output()
        })
        .collect();
    others.push(
        Command::new(pgmorph_bin())
            .args(["schemasync", "--config", &config])
            .env("PGMORPH_LOG", "warn")
            .output(),
    );
    for (out, mode) in others.into_iter().zip(modes.iter().chain(&["schemasync"])) {
        let out = out?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "mode {mode}: retry later");
        assert!(
            err.contains("connector owned is already running") && err.contains("--wait-for-lock"),
            "mode {mode}: {err}"
        );
    }
    for cmd in [
        vec!["reset", "--config", &config, "--yes"],
        vec!["offset", "set", "--config", &config, "FF/0", "--yes"],
    ] {
        let (ok, _, err) = run_bin(&cmd);
        assert!(!ok && err.contains("is already running"), "{cmd:?}: {err}");
    }
    // The owner's row is untouched, and status shows who owns it.
    wait_until(&dst, &streaming(first.id()), None).await?;
    let (ok, out, err) = run_bin(&["status", "--config", &config]);
    assert!(ok, "{err}");
    assert!(
        out.contains("polling") && out.contains("pgmorph owner"),
        "{out}"
    );
    assert!(first.is_running(), "{}", std::fs::read_to_string(&log)?);

    // A process waiting for the lock takes over when the owner is killed.
    let mut wait_args = args.clone();
    wait_args.push("--wait-for-lock".into());
    let mut second = spawn_bin(&wait_args, &pair.dir.path().join("second.log"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(second.is_running(), "the waiting process gave up");
    wait_until(&dst, &streaming(first.id()), None).await?;
    first.kill();
    wait_until(&dst, &streaming(second.id()), None).await?;
    let written = load.stop().await?;
    wait_same(&src, &dst, &TABLES, None).await?;
    assert_eq!(duplicated(&dst, "postgres.events").await?, 0);
    assert!(written > 100, "the load wrote {written} rows");

    // With the owner gone, status says so instead of repeating the last row written.
    second.kill();
    let (ok, out, err) = run_bin(&["status", "--config", &config]);
    assert!(ok, "{err}");
    assert!(out.contains("crashed"), "{out}");
    Ok(())
}

/// A process that stops because it lost its destination cannot record why there: `status`
/// shows the error kept on this machine, while the destination is down and after it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_why_a_process_that_lost_its_destination_stopped() -> anyhow::Result<()> {
    let mut pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (args, _) = plugin_support::binary_run(&pair, "lostdest", "schema = \"public\"", &[])?;
    // A few quick attempts to connect again, then the process gives up.
    let mut text = std::fs::read_to_string(&args[2])?;
    text.push_str("[reconnect]\ninitial_delay_ms = 200\nmax_delay_s = 1\nmax_attempts = 10\n");
    std::fs::write(&args[2], text)?;
    let state_dir = pair.dir.path().join("state");
    let bin = |args: &[&str]| {
        Command::new(pgmorph_bin())
            .args(args)
            .env("PGMORPH_LOG", "warn")
            .env("PGMORPH_STATE_DIR", &state_dir)
            .output()
    };
    let mut child = Command::new(pgmorph_bin())
        .args(&args)
        .env("PGMORPH_STATE_DIR", &state_dir)
        .env("PGMORPH_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let streaming = "SELECT state = 'polling' FROM pgmorph.state WHERE name = 'lostdest'";
    wait_until(&dst, streaming, None).await?;
    drop(dst);
    pair.dest.stop()?;
    let config = args[2].as_str();
    // While it tries again, status (from this machine) says so.
    let start = std::time::Instant::now();
    let mut text = String::new();
    while child.try_wait()?.is_none() && start.elapsed() < DEADLINE {
        text = String::from_utf8_lossy(&bin(&["status", "--config", config])?.stdout).into_owned();
        if text.contains("reconnecting") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        text.contains("reconnecting (destination unreachable; attempt"),
        "{text}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert_eq!(status.code(), Some(75), "a lost destination: retry later");

    let out = bin(&["status", "--config", config])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("destination unreachable") && text.contains("retry later"),
        "{text}"
    );
    pair.dest.restart()?;
    let out = bin(&["status", "--config", config])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("crashed") && text.contains("recorded on this machine"),
        "{text}"
    );
    Ok(())
}
