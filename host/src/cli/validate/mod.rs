//! `pgmorph validate`: checks a connector's setup without changing anything (no slot,
//! publication, schema, table or state row is created) and prints a report, one line per
//! check, or JSON.

mod destination_side;
mod mapping;
mod report;
mod source_side;

use std::path::Path;

use pgmorph::config::Config;

use report::Report;

/// Runs every check and prints the report; fails with [`super::Unmet`] when a check found an
/// error.
pub async fn run(config: &Config, plugins: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let mut report = Report::default();
    let source = source_side::check(config, &mut report).await?;
    let schemas = match &source {
        Some(s) => {
            let dest_schema = config.dest_schema(s.dbname());
            mapping::check(config, plugins, &dest_schema, &s.tables, &mut report)
        }
        None => Vec::new(),
    };
    let connector = destination_side::check(config, &schemas, &mut report).await?;
    if let Some(s) = &source {
        s.replication_checks(config, connector.as_ref(), &mut report)
            .await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{report}");
    }
    match report.errors() {
        0 => Ok(()),
        n => Err(super::Unmet(format!(
            "{n} of {} checks found an error",
            report.checks.len()
        ))
        .into()),
    }
}
