//! One process runs a connector at a time. Before it touches anything, a process takes a
//! session-level advisory lock on the destination, keyed by the connector's name, on a
//! connection of its own that it keeps for its whole life. The server releases the lock when
//! that session ends, also when the process is killed, so the next process can take over.
//! Operator commands that change a connector's state (`reset`, `offset set`) take it too.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use super::{StateError, Status};

/// Takes the lock if it is free. The first key (7419284) marks pgmorph's connector locks; the
/// second is the hash of the connector's name.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(7419284, hashtext($1))";

/// The session holding connector `$1`'s lock, if any.
const HOLDER: &str = "SELECT a.pid, coalesce(a.application_name, ''), \
     coalesce(host(a.client_addr), 'local'), to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') \
     FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid) \
     WHERE l.locktype = 'advisory' AND l.classid = 7419284::oid \
       AND l.objid = hashtext($1)::oid AND l.objsubid = 2 AND l.granted";

/// How long a start waits for the lock before refusing: a process killed a moment ago holds
/// it until the server notices its connection closed.
pub const GRACE: Duration = Duration::from_secs(5);

/// How often the lock is tried again while waiting, and the lock's connection checked.
const RETRY: Duration = Duration::from_millis(250);
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The connector could not be owned.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// Another session holds the lock.
    #[error(
        "connector {name} is already running: {holder} holds its lock on the destination; stop it \
         first (`pgmorph stop`), or start with --wait-for-lock to take over when it ends"
    )]
    Held {
        /// The connector.
        name: String,
        /// Who holds it, in words.
        holder: String,
    },
    /// The connection holding the lock closed while running.
    #[error(
        "the destination connection holding connector {0}'s lock closed, so another process may \
         take the connector over: this one stops"
    )]
    Lost(String),
    /// Stopped while waiting for the lock.
    #[error("stopped while waiting for connector {0}'s lock")]
    Interrupted(String),
    /// A query failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<tokio_postgres::Error> for OwnerError {
    fn from(e: tokio_postgres::Error) -> Self {
        OwnerError::State(e.into())
    }
}

/// Whether a start waits for a running owner to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Wait up to [`GRACE`], then refuse.
    #[default]
    Briefly,
    /// Wait until the lock is free (or shutdown).
    UntilFree,
}

/// The session that holds a connector's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The destination backend's pid.
    pub backend_pid: i32,
    /// Its `application_name`.
    pub application: String,
    /// Its client address (`local` for a Unix socket).
    pub client: String,
    /// When the session started.
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "destination session {} ({}, from {}, since {})",
            self.backend_pid, self.application, self.client, self.since
        )
    }
}

/// A connector owned by this process while the value lives.
pub struct Ownership {
    client: Client,
    name: String,
}

impl Ownership {
    /// Takes connector `name`'s lock on `client`'s session, waiting as `wait` says; `shutdown`
    /// ends a wait.
    pub async fn claim(
        client: Client,
        name: &str,
        wait: Wait,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Self, OwnerError> {
        let deadline = tokio::time::Instant::now() + GRACE;
        let mut announced = false;
        loop {
            if try_lock(&client, name).await? {
                return Ok(Self {
                    client,
                    name: name.to_string(),
                });
            }
            let holder = describe_holder(&client, name).await?;
            if wait == Wait::Briefly && tokio::time::Instant::now() >= deadline {
                return Err(OwnerError::Held {
                    name: name.to_string(),
                    holder,
                });
            }
            if wait == Wait::UntilFree && !announced {
                tracing::info!(connector = name, %holder, "waiting for the running connector to end");
                announced = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.changed() => return Err(OwnerError::Interrupted(name.to_string())),
            }
        }
    }

    /// Whether the session holding the lock still answers.
    pub async fn is_alive(&self) -> bool {
        tokio::time::timeout(CHECK_EVERY * 5, self.client.simple_query(""))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Returns when the session holding the lock is gone (checked every few seconds).
    pub async fn lost(&self) -> OwnerError {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            if !self.is_alive().await {
                return OwnerError::Lost(self.name.clone());
            }
        }
    }
}

/// Takes connector `name`'s lock for a one-off operator command (the session keeps it until
/// `client` is dropped); refuses at once when a process runs the connector.
pub async fn claim_for_command(client: &Client, name: &str) -> Result<(), OwnerError> {
    if try_lock(client, name).await? {
        return Ok(());
    }
    Err(OwnerError::Held {
        name: name.to_string(),
        holder: describe_holder(client, name).await?,
    })
}

/// The session holding connector `name`'s lock, if one does.
pub async fn holder(client: &Client, name: &str) -> Result<Option<Holder>, StateError> {
    let row = client.query_opt(HOLDER, &[&name]).await?;
    Ok(row.map(|r| Holder {
        backend_pid: r.get::<_, Option<i32>>(0).unwrap_or(-1),
        application: r.get::<_, Option<String>>(1).unwrap_or_default(),
        client: r.get::<_, Option<String>>(2).unwrap_or_default(),
        since: r.get::<_, Option<String>>(3).unwrap_or_default(),
    }))
}

async fn try_lock(client: &Client, name: &str) -> Result<bool, OwnerError> {
    Ok(client.query_one(TRY_LOCK, &[&name]).await?.get(0))
}

async fn describe_holder(client: &Client, name: &str) -> Result<String, OwnerError> {
    Ok(match holder(client, name).await? {
        Some(h) => h.to_string(),
        // Released between the two queries: the next try takes it.
        None => "another session".to_string(),
    })
}

/// States a connector records only while a process runs it.
const RUNNING_STATES: [&str; 5] = [
    "initializing",
    "copying",
    "polling",
    "paused",
    "reconnecting",
];

impl Status {
    /// The status as it is, not only as last written: with no process holding the connector's
    /// lock, a connector recorded as running has crashed (or lost its destination before it
    /// could say so), and its pid is gone.
    pub fn with_owner(mut self, holder: Option<Holder>) -> Self {
        self.running = holder.is_some();
        self.owner = holder.map(|h| h.to_string());
        let final_pause = self.stage == "schema sync" && self.state == "paused";
        if !self.running && RUNNING_STATES.contains(&self.state.as_str()) && !final_pause {
            self.err = format!(
                "the process ended without recording why (it was {}); last error recorded: {}",
                self.state, self.err
            );
            self.state = "crashed".into();
            self.pid = -1;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(stage: &str, state: &str) -> Status {
        Status {
            name: "c".into(),
            connector_type: "postgres".into(),
            pid: 4242,
            stage: stage.into(),
            state: state.into(),
            err: "no error".into(),
            last_offset: None,
            stats: serde_json::Value::Null,
            tables: vec![],
            plugins: vec![],
            running: false,
            owner: None,
            err_kind: None,
            retries: Default::default(),
        }
    }

    fn holder() -> Holder {
        Holder {
            backend_pid: 77,
            application: "pgmorph owner".into(),
            client: "127.0.0.1".into(),
            since: "2026-12-04 17:00:00 UTC".into(),
        }
    }

    #[test]
    fn a_running_state_without_an_owner_is_a_crash() {
        let s = status("change data capture", "polling").with_owner(None);
        assert_eq!((s.state.as_str(), s.pid, s.running), ("crashed", -1, false));
        assert!(s.err.contains("it was polling"), "{}", s.err);
        let s = status("initial snapshot", "copying").with_owner(None);
        assert_eq!(s.state, "crashed");
    }

    #[test]
    fn an_owned_connector_keeps_its_recorded_state() {
        let s = status("change data capture", "polling").with_owner(Some(holder()));
        assert_eq!(
            (s.state.as_str(), s.pid, s.running),
            ("polling", 4242, true)
        );
        assert!(s.owner.unwrap().contains("destination session 77"));
    }

    #[test]
    fn ended_states_stay_as_recorded() {
        for (stage, state) in [
            ("change data capture", "stopped"),
            ("change data capture", "error"),
            ("initial snapshot", "done"),
            ("schema sync", "paused"),
        ] {
            let s = status(stage, state).with_owner(None);
            assert_eq!(s.state, state, "{stage}");
            assert_eq!(s.err, "no error");
        }
    }
}
