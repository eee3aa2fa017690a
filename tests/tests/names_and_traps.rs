//! Two operator-facing details, with the real binary: a table whose name contains a dot can be
//! listed in `source.tables` (quoted as in SQL), and a plugin panic's multi-line wasm backtrace
//! stays in the log while the state row and dead letters get the panic's message.

mod plugin_support;

use std::time::{Duration, Instant};

use anyhow::bail;
use pgmorph_e2e::{spawn_bin, wait_same, wait_streaming, wait_until, Pair, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_a_dot_in_its_name_is_listed_quoted_and_replicated() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        r#"CREATE TABLE "a.b" (id int PRIMARY KEY, v text);
           CREATE TABLE a (id int PRIMARY KEY);
           INSERT INTO "a.b" VALUES (1, 'snapshot');"#,
    )
    .await?;
    let (args, log) =
        plugin_support::binary_run(&pair, "dotted", r#"tables = ['public."a.b"']"#, &[])?;
    let mut child = spawn_bin(&args, &log);
    let show_log = |e: anyhow::Error| e.context(std::fs::read_to_string(&log).unwrap_or_default());
    wait_streaming(&dst, "dotted", None)
        .await
        .map_err(show_log)?;
    src.batch_execute(
        r#"INSERT INTO "a.b" VALUES (2, 'streamed'); UPDATE "a.b" SET v = 'x' WHERE id = 1"#,
    )
    .await?;
    wait_same(
        &src,
        &dst,
        &[(r#"public."a.b""#, r#"postgres."a.b""#)],
        None,
    )
    .await
    .map_err(show_log)?;
    let other: bool = dst
        .query_one("SELECT to_regclass('postgres.a') IS NULL", &[])
        .await?
        .get(0);
    assert!(other, "only the listed table is replicated, not public.a");
    child.stop_cleanly()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_message_reaches_the_state_row_and_dead_letters_and_its_backtrace_the_log(
) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await?;
    let fault = |on_error: &str| {
        format!(
            "on_error = \"{on_error}\"\nconfig = {{ mode = \"trap\", when_column = \"id\", when_equals = \"3\" }}"
        )
    };
    // Under dead_letter: the trapped row's error is the panic's message, on one line.
    let dead = fault("dead_letter");
    let (args, log) = plugin_support::binary_run(
        &pair,
        "trapdl",
        "schema = \"public\"",
        &[("50-fault", "fault", &dead)],
    )?;
    let mut child = spawn_bin(&args, &log);
    wait_streaming(&dst, "trapdl", None).await?;
    src.batch_execute("INSERT INTO t SELECT g, 'v' FROM generate_series(1, 5) g")
        .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 1 FROM pgmorph.dead_letters WHERE connector = 'trapdl'",
        None,
    )
    .await?;
    let error: String = dst
        .query_one(
            "SELECT error FROM pgmorph.dead_letters WHERE connector = 'trapdl'",
            &[],
        )
        .await?
        .get(0);
    assert!(
        error.contains("panicked: fault plugin: trap (at ") && !error.contains('\n'),
        "{error}"
    );
    assert!(
        !error.contains("wasm"),
        "no backtrace in the dead letter: {error}"
    );
    child.stop_cleanly()?;
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("plugin trapped") && text.contains("wasm backtrace"),
        "the whole trap is in the log: {text}"
    );

    // Under stop: the state row's error is one line, the log has the backtrace.
    let stop = fault("stop");
    let (args, log) = plugin_support::binary_run(
        &pair,
        "trapstop",
        "schema = \"public\"",
        &[("50-fault", "fault", &stop)],
    )?;
    dst.batch_execute("DROP TABLE postgres.t").await?;
    let mut child = spawn_bin(&args, &log);
    let start = Instant::now();
    while child.is_running() {
        if start.elapsed() > DEADLINE {
            bail!("the connector went on past a trap");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err: String = dst
        .query_one("SELECT err FROM pgmorph.state WHERE name = 'trapstop'", &[])
        .await?
        .get(0);
    assert!(
        err.contains("panicked: fault plugin: trap") && !err.contains('\n'),
        "the panic's message on one line in the state row: {err}"
    );
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("wasm backtrace"),
        "the whole trap is in the log: {text}"
    );
    Ok(())
}
