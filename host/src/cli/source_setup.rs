//! `pgmorph setup-source` and `pgmorph teardown-source`: the publication and, with `--ddl`,
//! the event triggers that put source DDL into the replication stream.

use anyhow::Context;
use pgmorph::config::Config;
use pgmorph::source::{catalog, ddl_trigger, publication, setup, versions};

async fn connect(config: &Config, what: &str) -> anyhow::Result<tokio_postgres::Client> {
    let src = config.source_connection()?;
    src.connect(what)
        .await
        .with_context(|| format!("cannot connect to the source {}", src.describe()))
}

/// Checks the source, creates or updates the publication, and with `ddl` installs the DDL
/// triggers (`drop_tables`: a table dropped on the source is dropped on the destination).
pub async fn setup(config: &Config, ddl: bool, drop_tables: bool) -> anyhow::Result<()> {
    if drop_tables && !ddl {
        anyhow::bail!("--drop-tables goes with --ddl");
    }
    let source = connect(config, "pgmorph setup-source").await?;
    setup::check_server(&source).await?;
    let version = versions::server_version_num(&source).await?;
    versions::check(config, version)?;
    let tables: Vec<_> = catalog::select_configured(&source, config)
        .await?
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    let publication = config.slot_name();
    let filters = config.row_filters();
    let slot_exists = setup::slot_info(&source, &publication).await?.is_some();
    let wanted = publication::Wanted {
        name: &publication,
        tables: &tables,
        filters: &filters,
        via_root: config.publish_via_root(),
        keep_filters: slot_exists,
        server_version_num: version,
    };
    let published = publication::ensure(&source, &wanted, true).await?;
    let filtered = published.values().filter(|p| p.filter.is_some()).count();
    println!(
        "publication {publication} publishes {} tables ({filtered} through a row filter)",
        tables.len()
    );
    if ddl {
        let follow = ddl_trigger::Follow {
            drop_tables,
            // A whole schema is replicated: tables created in it join.
            new_tables_in: config
                .source
                .tables
                .is_none()
                .then(|| config.source_schema()),
        };
        ddl_trigger::install(&source, &config.name, &publication, &follow).await?;
        println!(
            "DDL triggers installed: schema changes of the published tables reach connector {}",
            config.name
        );
    }
    Ok(())
}

/// Removes the DDL triggers (the slot and publication stay: `pgmorph reset` drops them).
pub async fn teardown(config: &Config) -> anyhow::Result<()> {
    let source = connect(config, "pgmorph teardown-source").await?;
    if ddl_trigger::remove(&source, &config.name).await? {
        println!("DDL triggers of connector {} removed", config.name);
    } else {
        println!("connector {} had no DDL triggers", config.name);
    }
    Ok(())
}
