//! Bad input gets a clear, one-line error naming what to fix, and a non-zero exit.

use pgmorph::cluster::{ClusterOptions, LocalCluster};
use pgmorph_e2e::{run_bin, Pair};

fn run_fails(config: &std::path::Path) -> String {
    let (ok, _, err) = run_bin(&["run", "--config", config.to_str().unwrap()]);
    assert!(!ok, "pgmorph run should fail");
    let last = err.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{err}");
    last
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "name = \"x\"\n[source]\nurl = \"postgres://a@127.0.0.1:1/db\"\nsehcma = \"public\"\n[destination]\nurl = \"postgres://a@127.0.0.1:2/db\"\n",
    )
    .unwrap();
    let err = run_fails(&path);
    assert!(
        err.contains("unknown field `sehcma`") && err.contains("line 4"),
        "{err}"
    );
}

#[test]
fn unreachable_server_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &path,
        format!("name = \"x\"\n[source]\nurl = \"postgres://a@127.0.0.1:{port}/db\"\n[destination]\nurl = \"postgres://a@127.0.0.1:{port}/db\"\n"),
    )
    .unwrap();
    let err = run_fails(&path);
    assert!(
        err.contains("cannot connect to the destination") && err.contains(&port.to_string()),
        "{err}"
    );
}

#[test]
fn wal_level_not_logical_is_explained() -> anyhow::Result<()> {
    let pair = Pair {
        source: LocalCluster::start(ClusterOptions::destination())?,
        dest: LocalCluster::start(ClusterOptions::destination())?,
        dir: tempfile::tempdir()?,
    };
    pair.source
        .psql("postgres", "CREATE TABLE t (id int PRIMARY KEY)")?;
    let (path, _) = pair.config("wal", "", "")?;
    let err = run_fails(&path);
    assert!(
        err.contains("wal_level=replica") && err.contains("wal_level = logical"),
        "{err}"
    );
    // The state row carries the error too.
    let state = pair.dest.psql(
        "postgres",
        "SELECT state || ': ' || err FROM pgmorph.state WHERE name = 'wal'",
    )?;
    assert!(
        state.starts_with("error: ") && state.contains("wal_level"),
        "{state}"
    );
    Ok(())
}

#[test]
fn wrong_password_is_reported() -> anyhow::Result<()> {
    let source = LocalCluster::start(ClusterOptions::source().with_password("right"))?;
    let dest = LocalCluster::start(ClusterOptions::destination())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"pw\"\n[source]\nurl = \"postgres://postgres:wrong@127.0.0.1:{}/postgres\"\n[destination]\nurl = \"{}\"\n",
            source.port(),
            dest.url("postgres")
        ),
    )?;
    let err = run_fails(&path);
    assert!(
        err.contains("cannot connect to the source")
            && err.contains("password authentication failed"),
        "{err}"
    );
    assert!(
        !err.contains("wrong"),
        "the password must not be printed: {err}"
    );
    Ok(())
}

#[test]
fn table_without_key_is_named_with_the_fix() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    pair.source.psql(
        "postgres",
        "CREATE TABLE good (id int PRIMARY KEY); CREATE TABLE keyless (a int)",
    )?;
    let (path, _) = pair.config("nokey", "", "schema = \"public\"")?;
    let err = run_fails(&path);
    assert!(
        err.contains("table public.keyless has no primary key or replica identity")
            && err.contains("REPLICA IDENTITY FULL"),
        "{err}"
    );
    Ok(())
}

#[test]
fn two_tables_landing_on_one_name_are_refused() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    pair.source.psql(
        "postgres",
        "CREATE SCHEMA sales; CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE sales.a (id int PRIMARY KEY)",
    )?;
    let (path, _) = pair.config("clash", "", "tables = [\"public.a\", \"sales.a\"]")?;
    let err = run_fails(&path);
    assert!(
        err.contains("public.a") && err.contains("sales.a") && err.contains("postgres.a"),
        "{err}"
    );
    Ok(())
}

#[test]
fn missing_table_is_named() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (path, _) = pair.config("missing", "", "tables = [\"public.nope\"]")?;
    let err = run_fails(&path);
    assert!(err.contains("table public.nope does not exist"), "{err}");
    Ok(())
}

#[test]
fn missing_privileges_are_named_with_the_fix() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    pair.source.psql(
        "postgres",
        "CREATE TABLE t (id int PRIMARY KEY);
         CREATE ROLE plain LOGIN;
         CREATE ROLE repl LOGIN REPLICATION;",
    )?;
    let config = |name: &str, role: &str| -> anyhow::Result<std::path::PathBuf> {
        let text = pair
            .config_text(name, "", "tables = [\"public.t\"]")
            .replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
        let path = pair.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let err = run_fails(&config("noreplication", "plain")?);
    assert!(
        err.contains("may not replicate") && err.contains("ALTER ROLE \"plain\" REPLICATION"),
        "{err}"
    );
    let err = run_fails(&config("noselect", "repl")?);
    assert!(
        err.contains("may not read table public.t") && err.contains("GRANT SELECT"),
        "{err}"
    );
    Ok(())
}

/// Runs `pgmorph run` and returns its exit code and last line.
fn exit_of(config: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(pgmorph_e2e::pgmorph_bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .env("PGMORPH_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        err.lines().last().unwrap_or_default().into(),
    )
}

#[test]
fn the_exit_code_and_the_state_row_say_what_to_do() -> anyhow::Result<()> {
    let source = LocalCluster::start(ClusterOptions::source().with_password("right"))?;
    let dest = LocalCluster::start(ClusterOptions::destination())?;
    let dir = tempfile::tempdir()?;
    let config = |name: &str, source_url: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.path().join(format!("{name}.toml"));
        let text = format!(
            "name = \"{name}\"\n[source]\nurl = \"{source_url}\"\n[destination]\nurl = \"{}\"\n",
            dest.url("postgres")
        );
        std::fs::write(&path, text)?;
        Ok(path)
    };
    // A refused password: fix the config (78), recorded with the error.
    let wrong = format!(
        "postgres://postgres:wrong@127.0.0.1:{}/postgres",
        source.port()
    );
    let (code, err) = exit_of(&config("pw", &wrong)?);
    assert_eq!(code, Some(78), "{err}");
    let kind = dest.psql(
        "postgres",
        "SELECT err_kind FROM pgmorph.state WHERE name = 'pw'",
    )?;
    assert_eq!(kind.trim(), "fix config");
    // A source that cannot be reached: retry later (75).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let (code, err) = exit_of(&config(
        "down",
        &format!("postgres://a@127.0.0.1:{port}/db"),
    )?);
    assert_eq!(code, Some(75), "{err}");
    // A bad config key: fix the config (78).
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"x\"\nsehcma = 1\n")?;
    let (code, err) = exit_of(&path);
    assert_eq!(code, Some(78), "{err}");
    Ok(())
}
