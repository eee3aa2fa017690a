//! Building and running `initdb`, `pg_ctl` and `psql` child processes.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::bin::find_psql;
use super::user::RunAs;
use super::ClusterError;

/// How to launch the PostgreSQL tools for one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    /// Directory holding the binaries.
    pub bin_dir: PathBuf,
    /// Used as `HOME` and working directory (readable by `run_as`).
    pub home: PathBuf,
    /// Unprivileged user to switch to, when we are root.
    pub run_as: Option<RunAs>,
}

impl Tools {
    /// A command for `program` from the bin dir, with a clean `PG*`
    /// environment, `HOME` and cwd set to the cluster's temp dir, and
    /// privileges dropped if needed. Stdin is `/dev/null`.
    pub(crate) fn command(&self, program: &str) -> Command {
        let path = match program {
            "psql" => find_psql(&self.bin_dir),
            _ => self.bin_dir.join(program),
        };
        let mut cmd = Command::new(path);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", &self.home)
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir(&self.home)
            .stdin(Stdio::null());
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    /// Runs `cmd` to completion, optionally feeding `input` on stdin, and
    /// fails unless it exits successfully. `what` names it in errors.
    pub(crate) fn run(
        &self,
        mut cmd: Command,
        what: &str,
        input: Option<&str>,
    ) -> Result<Output, ClusterError> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ClusterError::io(format!("spawning {what}"), e))?;
        // Write stdin from a thread so a chatty child cannot deadlock us.
        let writer = match (input, child.stdin.take()) {
            (Some(text), Some(mut stdin)) => {
                let text = text.to_owned();
                Some(std::thread::spawn(move || stdin.write_all(text.as_bytes())))
            }
            _ => None,
        };
        let output = child
            .wait_with_output()
            .map_err(|e| ClusterError::io(format!("waiting for {what}"), e))?;
        // A broken pipe just means the child stopped reading (e.g. ON_ERROR_STOP).
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        if output.status.success() {
            Ok(output)
        } else {
            Err(command_error(what, &output))
        }
    }
}

fn command_error(what: &str, output: &Output) -> ClusterError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = match (stderr.trim(), stdout.trim()) {
        ("", out) => out.to_owned(),
        (err, "") => err.to_owned(),
        (err, out) => format!("{err}\n{out}"),
    };
    ClusterError::Command {
        program: what.to_owned(),
        status: output.status.to_string(),
        output: text,
    }
}
