//! The column-by-column mapping of each table as recorded in `pgmorph.attributes` (the
//! attribute view), and reading back what the previous run recorded.

use std::collections::HashMap;
use std::sync::Arc;

use super::{StateError, StateStore};
use crate::model::{MappedColumn, TableMapping, TableName};

impl StateStore {
    /// Records the column-by-column mapping of every table (the attribute view).
    pub async fn record_mappings(&self, mappings: &[Arc<TableMapping>]) -> Result<(), StateError> {
        self.client
            .execute(
                "DELETE FROM pgmorph.attributes WHERE connector = $1",
                &[&self.name],
            )
            .await?;
        for m in mappings {
            self.record_mapping(m).await?;
        }
        Ok(())
    }

    /// Records (or replaces) one table's column mapping.
    pub async fn record_mapping(&self, m: &TableMapping) -> Result<(), StateError> {
        let source = m.source.name.to_string();
        self.client
            .execute(
                "DELETE FROM pgmorph.attributes WHERE connector = $1 AND source_table = $2",
                &[&self.name, &source],
            )
            .await?;
        let dest = (!m.skip).then(|| m.destination.to_string());
        let mut attnum = 0i32;
        for (i, c) in m.source.columns.iter().enumerate() {
            attnum += 1;
            let mapped = if m.skip {
                None
            } else {
                m.columns.iter().find(|d| d.source_index == Some(i))
            };
            let changed_by = mapped
                .map(|d| d.changed_by.join(", "))
                .filter(|s| !s.is_empty());
            self.client
                .execute(
                    "INSERT INTO pgmorph.attributes VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &self.name,
                        &source,
                        &dest,
                        &attnum,
                        &Some(c.name.clone()),
                        &mapped.map(|d| d.name.clone()),
                        &Some(c.type_sql.clone()),
                        &mapped.map(|d| d.type_sql.clone()),
                        &changed_by,
                    ],
                )
                .await?;
        }
        for d in m.columns.iter().filter(|d| d.source_index.is_none()) {
            attnum += 1;
            let changed_by = Some(d.changed_by.join(", ")).filter(|s| !s.is_empty());
            self.client
                .execute(
                    "INSERT INTO pgmorph.attributes VALUES ($1, $2, $3, $4, NULL, $5, NULL, $6, $7)",
                    &[&self.name, &source, &dest, &attnum, &d.name, &d.type_sql, &changed_by],
                )
                .await?;
        }
        Ok(())
    }

    /// The source columns (name, type) recorded by the previous run, by source table.
    pub async fn recorded_source_columns(
        &self,
    ) -> Result<HashMap<String, Vec<(String, String)>>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT source_table, source_column, source_type FROM pgmorph.attributes \
                 WHERE connector = $1 AND source_column IS NOT NULL ORDER BY source_table, attnum",
                &[&self.name],
            )
            .await?;
        let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for r in rows {
            let column = (r.get(1), r.get::<_, Option<String>>(2).unwrap_or_default());
            out.entry(r.get(0)).or_default().push(column);
        }
        Ok(out)
    }

    /// Reads the mappings recorded by the previous run (the attribute view), by source table.
    pub async fn previous_mappings(
        &self,
        current: &[Arc<TableMapping>],
    ) -> Result<HashMap<String, TableMapping>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT source_table, dest_table, source_column, dest_column, dest_type \
                 FROM pgmorph.attributes WHERE connector = $1 ORDER BY source_table, attnum",
                &[&self.name],
            )
            .await?;
        let mut out: HashMap<String, TableMapping> = HashMap::new();
        for r in rows {
            let source_table: String = r.get(0);
            let Some(now) = current
                .iter()
                .find(|m| m.source.name.to_string() == source_table)
            else {
                continue;
            };
            let dest_table: Option<String> = r.get(1);
            let entry = out.entry(source_table).or_insert_with(|| TableMapping {
                source: now.source.clone(),
                destination: dest_table
                    .as_deref()
                    .map(|d| TableName::parse(d, &now.destination.schema))
                    .unwrap_or_else(|| now.destination.clone()),
                columns: Vec::new(),
                skip: dest_table.is_none(),
                transforms_rows: false,
            });
            let source_column: Option<String> = r.get(2);
            let (Some(name), Some(type_sql)) =
                (r.get::<_, Option<String>>(3), r.get::<_, Option<String>>(4))
            else {
                continue;
            };
            entry.columns.push(MappedColumn {
                source_index: source_column
                    .and_then(|s| now.source.columns.iter().position(|c| c.name == s)),
                name,
                type_sql,
                not_null: true,
                is_key: false,
                changed_by: Vec::new(),
            });
        }
        Ok(out)
    }
}
