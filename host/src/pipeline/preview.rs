//! The mapping preview (`pgmorph schemasync --dry-run`): every table and column, source to
//! destination, after the plugins, without creating or moving anything.

use std::sync::Arc;

use serde::Serialize;

use super::connector::{connect, RunError};
use crate::config::Config;
use crate::model::TableMapping;
use crate::source::catalog;
use crate::transform::Transform;

/// One column of the preview.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnPreview {
    /// Source column name (`None` for a computed column).
    pub source_column: Option<String>,
    /// Source type.
    pub source_type: Option<String>,
    /// Destination column name (`None` when dropped).
    pub dest_column: Option<String>,
    /// Destination type.
    pub dest_type: Option<String>,
    /// Plugins that changed it.
    pub changed_by: Vec<String>,
}

/// One table of the preview.
#[derive(Debug, Clone, Serialize)]
pub struct TablePreview {
    /// `schema.table` on the source.
    pub source_table: String,
    /// `schema.table` on the destination (`None` when skipped).
    pub dest_table: Option<String>,
    /// Whether the plugins transform its rows.
    pub transforms_rows: bool,
    /// Columns: the source's in order, then computed ones.
    pub columns: Vec<ColumnPreview>,
}

impl TablePreview {
    /// Builds the preview of a mapping.
    pub fn of(m: &TableMapping) -> Self {
        let mut columns: Vec<ColumnPreview> = m
            .source
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let d = (!m.skip)
                    .then(|| m.columns.iter().find(|d| d.source_index == Some(i)))
                    .flatten();
                ColumnPreview {
                    source_column: Some(c.name.clone()),
                    source_type: Some(c.type_sql.clone()),
                    dest_column: d.map(|d| d.name.clone()),
                    dest_type: d.map(|d| d.type_sql.clone()),
                    changed_by: d.map(|d| d.changed_by.clone()).unwrap_or_default(),
                }
            })
            .collect();
        if !m.skip {
            columns.extend(
                m.columns
                    .iter()
                    .filter(|d| d.source_index.is_none())
                    .map(|d| ColumnPreview {
                        source_column: None,
                        source_type: None,
                        dest_column: Some(d.name.clone()),
                        dest_type: Some(d.type_sql.clone()),
                        changed_by: d.changed_by.clone(),
                    }),
            );
        }
        Self {
            source_table: m.source.name.to_string(),
            dest_table: (!m.skip).then(|| m.destination.to_string()),
            transforms_rows: m.transforms_rows,
            columns,
        }
    }
}

impl std::fmt::Display for TablePreview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dest = self.dest_table.as_deref().unwrap_or("(skipped)");
        writeln!(
            f,
            "{} -> {dest}{}",
            self.source_table,
            if self.transforms_rows {
                "  [rows transformed]"
            } else {
                ""
            }
        )?;
        if self.dest_table.is_none() {
            return Ok(());
        }
        for c in &self.columns {
            let src = format!(
                "{} {}",
                c.source_column.as_deref().unwrap_or("+"),
                c.source_type.as_deref().unwrap_or("(computed)")
            );
            let dst = match (&c.dest_column, &c.dest_type) {
                (Some(n), Some(t)) => format!("{n} {t}"),
                _ => "(dropped)".to_string(),
            };
            let by = if c.changed_by.is_empty() {
                String::new()
            } else {
                format!("  by {}", c.changed_by.join(", "))
            };
            writeln!(f, "  {src:<40} -> {dst}{by}")?;
        }
        Ok(())
    }
}

/// Reads the selected tables from the source and maps them, creating nothing.
pub async fn preview(
    config: &Config,
    transform: &mut dyn Transform,
) -> Result<Vec<TablePreview>, RunError> {
    let settings = config.source_connection()?;
    let source = connect(&settings, "pgmorph preview").await?;
    let dest_schema = config.dest_schema(&settings.dbname);
    let oids = catalog::select_configured(&source, config).await?;
    let selection = catalog::describe(&source, &oids, &dest_schema).await?;
    let mut out = Vec::new();
    for t in selection.tables {
        let m = transform.map_table(Arc::new(t), &dest_schema)?;
        out.push(TablePreview::of(&m));
    }
    Ok(out)
}
