//! The destination's checks of `pgmorph validate`: connection, CREATE where a run creates
//! schemas and tables, and the connector's recorded state.

use pgmorph::config::Config;
use pgmorph::model::{quote_ident, Lsn};
use pgmorph::sink::preflight::{self, SchemaAccess};
use pgmorph::state::{control, owner, StateStore, STATE_SCHEMA};

use super::report::{Check, Level, Report};
use super::source_side::{tls_words, unreachable};

/// What the destination says about the connector.
#[derive(Debug, Clone, Default)]
pub struct Connector {
    /// Whether it has state rows here (it ran against this destination).
    pub known: bool,
    /// Whether its initial snapshot completed.
    pub snapshot_done: bool,
    /// Whether a process runs it now (holds its lock).
    pub running: bool,
    /// The last position it applied.
    pub applied: Option<Lsn>,
}

/// Runs the destination's checks; `schemas` are the destination schemas the mapping uses.
/// `None` when the destination cannot be reached.
pub async fn check(
    config: &Config,
    schemas: &[String],
    report: &mut Report,
) -> anyhow::Result<Option<Connector>> {
    let settings = match config.destination_connection() {
        Ok(s) => s,
        Err(e) => {
            report.push(Check::bad(
                "destination.connection",
                Level::Error,
                pgmorph::error_chain::one_line(&e),
                "correct destination.url (or its password file)",
            ));
            return Ok(None);
        }
    };
    let client = match settings.connect("pgmorph validate").await {
        Ok(c) => c,
        Err(e) => {
            report.push(unreachable("destination", &settings, &e));
            return Ok(None);
        }
    };
    let (tls, dbname) = preflight::session(&client).await?;
    report.push(Check::ok(
        "destination.connection",
        format!("{}, {}", settings.describe(), tls_words(&settings, tls)),
    ));
    let mut all: Vec<&str> = vec![STATE_SCHEMA];
    all.extend(schemas.iter().map(String::as_str));
    for schema in all {
        let access = preflight::schema_access(&client, schema).await?;
        report.push(schema_check(&access, &dbname));
    }
    let connector = connector_check(&client, &config.name, report).await?;
    Ok(Some(connector))
}

fn schema_check(a: &SchemaAccess, dbname: &str) -> Check {
    let check = format!("destination.schema:{}", a.schema);
    match (a.exists, a.may_create) {
        (true, true) => Check::ok(
            check,
            format!(
                "schema {} exists; the role may create tables in it",
                a.schema
            ),
        ),
        (false, true) => Check::ok(
            check,
            format!(
                "schema {} does not exist yet; the role may create it",
                a.schema
            ),
        ),
        (true, false) => Check::bad(
            check,
            Level::Error,
            format!("the role may not create tables in schema {}", a.schema),
            format!(
                "GRANT CREATE ON SCHEMA {} TO the destination role",
                quote_ident(&a.schema)
            ),
        ),
        (false, false) => Check::bad(
            check,
            Level::Error,
            format!(
                "schema {} does not exist and the role may not create it",
                a.schema
            ),
            format!(
                "GRANT CREATE ON DATABASE {} TO the destination role, or create the schema for it",
                quote_ident(dbname)
            ),
        ),
    }
}

/// The connector's state as `pgmorph status` reads it (read-only).
async fn connector_check(
    client: &tokio_postgres::Client,
    name: &str,
    report: &mut Report,
) -> anyhow::Result<Connector> {
    const CHECK: &str = "state.connector";
    let Some(status) = StateStore::status(client, name).await? else {
        report.push(Check::ok(
            CHECK,
            format!("connector {name} has not run against this destination; a run starts with the snapshot"),
        ));
        return Ok(Connector::default());
    };
    let status = status.with_owner(owner::holder(client, name).await?);
    let applied = status
        .last_offset
        .as_ref()
        .and_then(|o| o["lsn"].as_str())
        .and_then(|s| s.parse().ok());
    let snapshot_done = control::snapshot_done(client, name).await?;
    let text = format!(
        "connector {name}: {} ({}), applied up to {}, {}",
        status.state,
        status.stage,
        applied
            .map(|l: Lsn| l.to_string())
            .unwrap_or_else(|| "-".into()),
        status
            .owner
            .as_deref()
            .map_or("no process runs it".to_string(), |o| format!("run by {o}"))
    );
    report.push(if matches!(status.state.as_str(), "error" | "crashed") {
        Check::bad(
            CHECK,
            Level::Warning,
            format!("{text}; last error: {}", status.err),
            "see `pgmorph status` for what to do about the error before starting again",
        )
    } else {
        Check::ok(CHECK, text)
    });
    Ok(Connector {
        known: true,
        snapshot_done,
        running: status.running,
        applied,
    })
}
