//! The source's checks of `pgmorph validate`: connection, `wal_level`, the role, free slots and
//! WAL senders, each selected table (SELECT, replica identity), the slot and the publication.

use pgmorph::config::{Config, ConnectionSettings};
use pgmorph::error_chain::one_line;
use pgmorph::model::{quote_ident, ReplicaIdentity, TableName, TableSchema};
use pgmorph::source::preflight::{self, ServerFacts, SlotFacts};
use pgmorph::source::{catalog, publication, versions};
use tokio_postgres::Client;

use super::destination_side::Connector;
use super::report::{Check, Level, Report};

/// What the source checks read, for the checks that need it later.
pub struct Source {
    client: Client,
    settings: ConnectionSettings,
    facts: ServerFacts,
    /// The selected tables with their schemas (empty when the selection failed).
    pub tables: Vec<TableSchema>,
}

/// Connects and runs the checks that need the source alone; `None` when it cannot be reached.
pub async fn check(config: &Config, report: &mut Report) -> anyhow::Result<Option<Source>> {
    let settings = match config.source_connection() {
        Ok(s) => s,
        Err(e) => {
            report.push(Check::bad(
                "source.connection",
                Level::Error,
                one_line(&e),
                "correct source.url (or its password file)",
            ));
            return Ok(None);
        }
    };
    let client = match settings.connect("pgmorph validate").await {
        Ok(c) => c,
        Err(e) => {
            report.push(unreachable("source", &settings, &e));
            return Ok(None);
        }
    };
    let facts = preflight::server(&client).await?;
    report.push(Check::ok(
        "source.connection",
        format!(
            "{}, {}",
            settings.describe(),
            tls_words(&settings, facts.tls)
        ),
    ));
    server_checks(&facts, report);
    report.push(version_check(config, facts.version_num));
    let mut source = Source {
        client,
        settings,
        facts,
        tables: Vec::new(),
    };
    source.table_checks(config, report).await?;
    Ok(Some(source))
}

/// A failed connection, with what to look at.
pub fn unreachable(side: &str, settings: &ConnectionSettings, e: &tokio_postgres::Error) -> Check {
    let fix = match settings.certificate_problem(e) {
        Some(problem) => {
            format!("{problem}: correct sslmode, sslrootcert or the server's certificate")
        }
        None => format!(
            "check {side}.url, that the server runs and accepts this role from this host \
             (pg_hba.conf), the password and the TLS settings"
        ),
    };
    Check::bad(
        format!("{side}.connection"),
        Level::Error,
        format!("cannot connect to {}: {}", settings.describe(), one_line(e)),
        fix,
    )
}

/// `TLS on (sslmode=...)`.
pub fn tls_words(settings: &ConnectionSettings, tls: bool) -> String {
    let on = if tls { "on" } else { "off" };
    format!("TLS {on} (sslmode={})", settings.sslmode())
}

fn server_checks(f: &ServerFacts, report: &mut Report) {
    report.push(match f.wal_level.as_str() {
        "logical" => Check::ok("source.wal_level", "wal_level is logical"),
        other => Check::bad(
            "source.wal_level",
            Level::Error,
            format!("wal_level is {other}; logical replication needs logical"),
            "ALTER SYSTEM SET wal_level = logical, then restart the source server",
        ),
    });
    report.push(if f.superuser || f.replication {
        let what = if f.superuser {
            "superuser"
        } else {
            "REPLICATION"
        };
        Check::ok("source.role", format!("role {} has {what}", f.user))
    } else {
        Check::bad(
            "source.role",
            Level::Error,
            format!("role {} has neither REPLICATION nor superuser", f.user),
            format!("ALTER ROLE {} REPLICATION", quote_ident(&f.user)),
        )
    });
}

/// The source's version against the features the config asks for (failover slots on 17+,
/// row filters on 15+).
fn version_check(config: &Config, version_num: u32) -> Check {
    const CHECK: &str = "source.version";
    let version = versions::version_words(version_num);
    if let Err(e) = versions::check(config, version_num) {
        return Check::bad(
            CHECK,
            Level::Error,
            e.to_string(),
            "remove the key named, or upgrade the source",
        );
    }
    let mut uses = Vec::new();
    if config.source.failover_slot {
        uses.push("a failover slot".to_string());
    }
    let filters = config.row_filters().len();
    if filters > 0 {
        uses.push(format!("row filters on {filters} tables"));
    }
    let uses = match uses.is_empty() {
        true => String::new(),
        false => format!(", which has what the config uses: {}", uses.join(", ")),
    };
    Check::ok(CHECK, format!("PostgreSQL {version}{uses}"))
}

impl Source {
    /// The source database's name.
    pub fn dbname(&self) -> &str {
        &self.settings.dbname
    }

    async fn table_checks(&mut self, config: &Config, report: &mut Report) -> anyhow::Result<()> {
        let selected = match catalog::select_configured(&self.client, config).await {
            Ok(s) => s,
            Err(e) => {
                report.push(Check::bad(
                    "source.tables",
                    Level::Error,
                    one_line(&e),
                    "correct source.schema or source.tables",
                ));
                return Ok(());
            }
        };
        let names: Vec<String> = selected.iter().map(|(_, n)| n.to_string()).collect();
        report.push(Check::ok(
            "source.tables",
            format!("{} tables selected: {}", names.len(), names.join(", ")),
        ));
        let dest_schema = config.dest_schema(self.dbname());
        let selection = catalog::describe_unchecked(&self.client, &selected, &dest_schema).await?;
        for ((oid, name), table) in selected.iter().zip(&selection.tables) {
            let access = preflight::table_access(&self.client, *oid).await?;
            report.push(table_check(name, table, access.select));
        }
        self.tables = selection.tables;
        Ok(())
    }

    /// The checks that need the destination's view of the connector too: slots and WAL
    /// senders to spare, the connector's slot and its publication.
    pub async fn replication_checks(
        &self,
        config: &Config,
        connector: Option<&Connector>,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let slot_name = config.slot_name();
        let slot = preflight::slot(&self.client, &slot_name).await?;
        capacity_checks(&self.facts, slot.as_ref(), report);
        report.push(slot_check(
            &slot_name,
            slot.as_ref(),
            self.dbname(),
            connector,
        ));
        if let Some(check) = failover_check(config, slot.as_ref()) {
            report.push(check);
        }
        self.publication_check(&slot_name, report).await?;
        self.row_filter_check(config, slot.is_some(), report).await
    }

    /// The row filters as `pgmorph run` would publish them, tried in a transaction that is
    /// rolled back: a filter the source refuses, one outside the replica identity, or one that
    /// would change under an existing slot.
    async fn row_filter_check(
        &self,
        config: &Config,
        slot_exists: bool,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        const CHECK: &str = "source.row_filters";
        let filters = config.row_filters();
        if filters.is_empty() || versions::check(config, self.facts.version_num).is_err() {
            return Ok(()); // nothing to check, or source.version names the problem
        }
        let tables: Vec<TableName> = self.tables.iter().map(|t| t.name.clone()).collect();
        let wanted = publication::Wanted {
            name: &config.slot_name(),
            tables: &tables,
            filters: &filters,
            via_root: config.publish_via_root(),
            keep_filters: slot_exists,
            server_version_num: self.facts.version_num,
        };
        report.push(match publication::ensure(&self.client, &wanted, false).await {
            Ok(published) => {
                let list: Vec<String> = published
                    .iter()
                    .filter_map(|(t, p)| Some(format!("{t} WHERE {}", p.filter.as_ref()?)))
                    .collect();
                Check::ok(CHECK, format!("rows published: {}", list.join("; ")))
            }
            Err(publication::PublicationError::Query(e)) => Check::bad(
                CHECK,
                Level::Error,
                format!("the source refuses the row filters: {}", one_line(&e)),
                "correct the conditions in [source.row_filters] (SQL on the table's columns),                  or run validate as the tables' owner",
            ),
            Err(e) => Check::bad(
                CHECK,
                Level::Error,
                e.to_string(),
                "see the message: change the filter, the replica identity or the table list",
            ),
        });
        Ok(())
    }

    async fn publication_check(&self, name: &str, report: &mut Report) -> anyhow::Result<()> {
        let wanted: Vec<String> = self.tables.iter().map(|t| t.name.to_string()).collect();
        let existing = preflight::publication(&self.client, name).await?;
        let listed = existing
            .as_ref()
            .map(|p| p.tables.clone())
            .unwrap_or_default();
        let mut missing = Vec::new();
        let mut not_owned = Vec::new();
        for t in self
            .tables
            .iter()
            .filter(|t| !listed.contains(&t.name.to_string()))
        {
            missing.push(t.name.to_string());
            if !preflight::table_access(&self.client, t.oid).await?.owner {
                not_owned.push(t.name.to_string());
            }
        }
        let check = "source.publication";
        let may_create = self.facts.create_on_database || self.facts.superuser;
        if !not_owned.is_empty() || (existing.is_none() && !may_create) {
            let why = if not_owned.is_empty() {
                format!(
                    "role {} may not create publication {name} (no CREATE on the database)",
                    self.facts.user
                )
            } else {
                format!(
                    "role {} does not own {}, so it cannot publish them",
                    self.facts.user,
                    not_owned.join(", ")
                )
            };
            report.push(Check::bad(
                check,
                Level::Error,
                why,
                "run `pgmorph setup-source` once as the tables' owner (or a superuser): it creates the publication",
            ));
            return Ok(());
        }
        report.push(match existing {
            None => Check::ok(
                check,
                format!("publication {name} does not exist yet; `pgmorph run` creates it"),
            ),
            Some(p) if !p.all_actions => Check::bad(
                check,
                Level::Warning,
                format!("publication {name} does not publish every kind of change"),
                format!(
                    "ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate')",
                    quote_ident(name)
                ),
            ),
            Some(p) => {
                let extra: Vec<&String> = p.tables.iter().filter(|t| !wanted.contains(t)).collect();
                let mut text = format!("publication {name} publishes {} tables", p.tables.len());
                if !missing.is_empty() {
                    text += &format!("; `pgmorph run` adds {}", missing.join(", "));
                }
                if !extra.is_empty() {
                    let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
                    text += &format!("; `pgmorph run` removes {}", extra.join(", "));
                }
                Check::ok(check, text)
            }
        });
        Ok(())
    }
}

/// The slot's `failover` property against `source.failover_slot` (PostgreSQL 17+ slots).
fn failover_check(config: &Config, slot: Option<&SlotFacts>) -> Option<Check> {
    let has = slot?.failover?;
    let want = config.source.failover_slot;
    let text = format!("slot {} has failover = {has}", config.slot_name());
    Some(match has == want {
        true => Check::ok("source.failover", text),
        false => Check::bad(
            "source.failover",
            Level::Warning,
            format!("{text}, source.failover_slot asks for {want}"),
            "`pgmorph run` sets it on its next start",
        ),
    })
}

/// SELECT on the table, and a way to identify its old rows.
fn table_check(name: &TableName, table: &TableSchema, select: bool) -> Check {
    let check = format!("source.table:{name}");
    if !select {
        return Check::bad(
            check,
            Level::Error,
            format!("the role may not read {name}"),
            format!("GRANT SELECT ON {} TO the source role", name.quoted()),
        );
    }
    if catalog::lacks_identity(table) {
        return Check::bad(
            check,
            Level::Error,
            format!(
                "{name} has no primary key or replica identity: UPDATE and DELETE on it fail \
                 on the source once it is published"
            ),
            format!(
                "add a primary key, or ALTER TABLE {} REPLICA IDENTITY FULL",
                name.quoted()
            ),
        );
    }
    let keys: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| c.name.as_str())
        .collect();
    let identity = match (table.has_primary_key, table.identity) {
        (true, _) => format!("primary key ({})", keys.join(", ")),
        (false, ReplicaIdentity::Full) => "replica identity full".to_string(),
        _ => format!("replica identity index ({})", keys.join(", ")),
    };
    Check::ok(check, format!("readable; rows identified by {identity}"))
}

/// Slots and WAL senders to spare: a run needs one slot and one WAL sender, a later copy
/// (a table added, `resync`) one more of each for a moment.
fn capacity_checks(f: &ServerFacts, slot: Option<&SlotFacts>, report: &mut Report) {
    let slot_needed = i64::from(slot.is_none());
    let sender_needed = i64::from(slot.is_none_or(|s| s.active_pid.is_none()));
    for (name, setting, (max, used), needed) in [
        (
            "source.slots",
            "max_replication_slots",
            f.slots,
            slot_needed,
        ),
        (
            "source.wal_senders",
            "max_wal_senders",
            f.wal_senders,
            sender_needed,
        ),
    ] {
        let free = max - used;
        let text = format!("{setting} = {max}, {used} in use, {free} free");
        report.push(if free < needed {
            Check::bad(
                name,
                Level::Error,
                text,
                format!("raise {setting} on the source (a restart) or drop unused slots"),
            )
        } else if free < needed + 1 {
            Check::bad(
                name,
                Level::Warning,
                format!("{text}: none left for the temporary slot of a later table copy"),
                format!("raise {setting} on the source by one"),
            )
        } else {
            Check::ok(name, text)
        });
    }
}

fn slot_check(
    name: &str,
    slot: Option<&SlotFacts>,
    dbname: &str,
    connector: Option<&Connector>,
) -> Check {
    const CHECK: &str = "source.slot";
    let Some(s) = slot else {
        if connector.is_some_and(|c| c.snapshot_done) {
            return Check::bad(
                CHECK,
                Level::Error,
                format!("slot {name} is missing although the connector's snapshot was done: changes since its last run are lost"),
                "`pgmorph reset`, then start again to copy every table",
            );
        }
        return Check::ok(
            CHECK,
            format!("slot {name} does not exist yet; `pgmorph run` creates it"),
        );
    };
    let plugin = s.plugin.as_deref().unwrap_or("-");
    if s.slot_type != "logical" || plugin != "pgoutput" || s.database.as_deref() != Some(dbname) {
        return Check::bad(
            CHECK,
            Level::Error,
            format!(
                "slot {name} is a {} slot with plugin {plugin} in database {}; pgmorph needs a logical pgoutput slot in {dbname}",
                s.slot_type,
                s.database.as_deref().unwrap_or("-")
            ),
            format!("drop it on the source (SELECT pg_drop_replication_slot('{name}')) if nothing else uses it"),
        );
    }
    if s.lost {
        return Check::bad(
            CHECK,
            Level::Error,
            format!("slot {name} was invalidated by the source (it kept more WAL than max_slot_wal_keep_size)"),
            "`pgmorph run --mode always` creates it again and copies every table",
        );
    }
    let confirmed = s
        .confirmed_flush
        .map(|l| l.to_string())
        .unwrap_or_else(|| "-".into());
    let Some(c) = connector else {
        return Check::ok(
            CHECK,
            format!("slot {name} (pgoutput) confirmed up to {confirmed}"),
        );
    };
    match (c, s.active_pid) {
        (c, _) if !c.known => Check::bad(
            CHECK,
            Level::Warning,
            format!("slot {name} exists (confirmed up to {confirmed}) but the connector has no state on this destination"),
            "if the slot is left over from another setup, `pgmorph reset` drops it",
        ),
        (c, Some(pid)) if !c.running => Check::bad(
            CHECK,
            Level::Warning,
            format!("slot {name} is in use by source process {pid}, but no process runs the connector here"),
            "stop the other consumer of the slot; `pgmorph run` waits for it briefly, then refuses",
        ),
        (c, _) if c.applied.is_some_and(|a| s.confirmed_flush.is_some_and(|f| f > a)) => Check::bad(
            CHECK,
            Level::Error,
            format!("slot {name} confirmed {confirmed}, more than the destination applied"),
            "`pgmorph run --mode always` copies every table again and streams on from the slot",
        ),
        (c, pid) => {
            let used = match (pid, c.running) {
                (Some(_), true) => "streamed by the running connector",
                _ => "not in use",
            };
            Check::ok(CHECK, format!("slot {name} (pgoutput) confirmed up to {confirmed}, {used}"))
        }
    }
}
