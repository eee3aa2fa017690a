//! A self-contained PostgreSQL launcher for the integration tests: initdb, pg_ctl start
//! and stop in a temporary directory, as `nobody` when the tests run as root.

#![allow(dead_code)]

pub mod certs;

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgmorph_replication::conn::{ConnectOptions, Connection};
use pgmorph_replication::endpoint::Endpoint;

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// A running test server; stopped and deleted on drop.
pub struct PgServer {
    root: tempfile::TempDir,
    port: u16,
    run_as: Option<(u32, u32)>,
}

impl PgServer {
    /// initdb + start with extra `postgresql.conf` lines and `pg_hba.conf` lines
    /// (after `local all all trust`). `files` are written next to the data directory.
    pub fn start(conf: &[&str], hba: &[&str], files: &[(&str, &str)]) -> PgServer {
        let run_as = run_as();
        let root = tempfile::Builder::new()
            .prefix("pgmorph-repl-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod root");
        let mut server = PgServer {
            root,
            port: 0,
            run_as,
        };
        server.give(server.root.path());
        for (name, contents) in files {
            let path = server.root.path().join(name);
            fs::write(&path, contents).expect("write file");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod file");
            server.give(&path);
        }
        server.run(
            "initdb",
            &[
                "-D",
                &server.data_str(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-N",
                "--locale=C",
                "-E",
                "UTF8",
            ],
        );
        let mut hba_text = String::from("local all all trust\n");
        for line in hba {
            hba_text.push_str(line);
            hba_text.push('\n');
        }
        fs::write(server.data().join("pg_hba.conf"), hba_text).expect("write pg_hba.conf");
        server.start_on_free_port(conf);
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory with the socket and the files given to `start`.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    pub fn file(&self, name: &str) -> String {
        self.dir().join(name).display().to_string()
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn data_str(&self) -> String {
        self.data().display().to_string()
    }

    /// Parses a key=value string with `port` filled in and no process environment.
    pub fn endpoint(&self, conninfo: &str) -> Endpoint {
        let full = format!("port={} dbname=postgres {conninfo}", self.port);
        Endpoint::parse_with_env(&full, &|name| {
            (name == "HOME").then(|| "/nonexistent".to_owned())
        })
        .unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    /// A superuser session over the Unix socket.
    pub async fn admin(&self) -> Connection {
        let endpoint = self.endpoint(&format!(
            "host={} user=postgres dbname=postgres",
            self.dir().display()
        ));
        Connection::connect(&endpoint, &ConnectOptions::default())
            .await
            .expect("admin connection")
    }

    fn start_on_free_port(&mut self, conf: &[&str]) {
        let base =
            fs::read_to_string(self.data().join("postgresql.conf")).expect("read postgresql.conf");
        for _ in 0..5 {
            self.port = free_port();
            let mut text = base.clone();
            text.push_str(&format!(
                "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nwal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\n",
                self.port,
                self.dir().display()
            ));
            for line in conf {
                text.push_str(line);
                text.push('\n');
            }
            fs::write(self.data().join("postgresql.conf"), text).expect("write postgresql.conf");
            let log = self.dir().join("server.log").display().to_string();
            if self.try_run(
                "pg_ctl",
                &[
                    "-D",
                    &self.data_str(),
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
            ) {
                return;
            }
        }
        let log = fs::read_to_string(self.dir().join("server.log")).unwrap_or_default();
        panic!("the test server did not start:\n{log}");
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(Path::new(BIN_DIR).join(program));
        cmd.args(args)
            .env("LC_ALL", "C")
            .current_dir(self.root.path());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn try_run(&self, program: &str, args: &[&str]) -> bool {
        let output = self
            .command(program, args)
            .output()
            .expect("run a server tool");
        if !output.status.success() {
            eprintln!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output.status.success()
    }

    fn run(&self, program: &str, args: &[&str]) {
        assert!(self.try_run(program, args), "{program} failed");
    }

    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.run_as {
            chown(path, Some(uid), Some(gid)).expect("chown to nobody");
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.port != 0 {
            self.try_run(
                "pg_ctl",
                &["-D", &self.data_str(), "-m", "immediate", "-w", "stop"],
            );
        }
    }
}

/// `nobody`'s uid and gid when running as root (PostgreSQL refuses to run as root).
fn run_as() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let euid = fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"nobody"));
    let ids = entry.and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)));
    Some(ids.unwrap_or((65534, 65534)))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// Polls `sql` until it returns `expected` or `timeout` passes.
pub async fn wait_for(conn: &mut Connection, sql: &str, expected: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let value = scalar(conn, sql).await;
        if value.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {sql} = {expected} (last {value:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The single value of a one-row, one-column query.
pub async fn scalar(conn: &mut Connection, sql: &str) -> Option<String> {
    let rows = conn
        .query_rows(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .flatten()
}
