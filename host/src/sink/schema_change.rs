//! How a destination table follows one source DDL command: the difference between the table's
//! mapping before and after the change, matched column by column through the source's
//! attribute numbers (a renamed source column is renamed, not dropped and added).

use super::error::failed;
use super::{ApplyError, Sink};
use crate::model::{quote_ident, quote_literal, MappedColumn, TableMapping, TableName};
use crate::state::ddl_history::{self, DdlRecord};

/// What became of one source DDL command on the destination.
#[derive(Debug, PartialEq, Eq)]
pub enum DdlOutcome {
    /// Its statements ran.
    Applied,
    /// The destination refused one (the error, SQLSTATE first); the table stays as it was.
    Skipped(String),
}

const SAVEPOINT: &str = "SAVEPOINT pgmorph_ddl";
const RELEASE: &str = "RELEASE SAVEPOINT pgmorph_ddl";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT pgmorph_ddl; RELEASE SAVEPOINT pgmorph_ddl";

impl Sink {
    /// Runs the destination statements of one source DDL command, then its history row and
    /// `state_sql` (state rows that follow the table), in the open destination transaction. A
    /// statement the destination refuses stops with the source statement named, or, with
    /// `skip_refused_ddl`, is rolled back with the others of the command and recorded as
    /// skipped.
    pub async fn apply_source_ddl(
        &mut self,
        statements: &[String],
        record: &DdlRecord<'_>,
        state_sql: Option<String>,
    ) -> Result<DdlOutcome, ApplyError> {
        let outcome = match self.skip_refused_ddl {
            true => self.try_source_ddl(statements, record).await?,
            false => {
                self.run_source_ddl(statements, record).await?;
                DdlOutcome::Applied
            }
        };
        let skipped = match &outcome {
            DdlOutcome::Skipped(error) => Some(error.as_str()),
            DdlOutcome::Applied => None,
        };
        let state = TableName::new(crate::state::STATE_SCHEMA, "ddl_history");
        self.execute_ddl(&state, &ddl_history::record_sql(record, skipped))
            .await?;
        // The state follows the source table, whatever the destination did.
        if let Some(sql) = state_sql {
            self.execute_ddl(&state, &sql).await?;
        }
        self.forget_statements();
        Ok(outcome)
    }

    /// Records a source DDL command pgmorph itself cannot follow as skipped, with `reason`.
    pub async fn skip_source_ddl(
        &mut self,
        record: &DdlRecord<'_>,
        reason: &str,
    ) -> Result<(), ApplyError> {
        let state = TableName::new(crate::state::STATE_SCHEMA, "ddl_history");
        self.execute_ddl(&state, &ddl_history::record_sql(record, Some(reason)))
            .await
    }

    async fn run_source_ddl(
        &mut self,
        statements: &[String],
        record: &DdlRecord<'_>,
    ) -> Result<(), ApplyError> {
        let table = record.dest_table;
        for sql in statements {
            self.execute_ddl(table, sql).await.map_err(|e| match e {
                ApplyError::Statement { source, .. } => ApplyError::SourceDdl {
                    table: table.to_string(),
                    statement: record.statement.to_string(),
                    sql: sql.clone(),
                    source,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Runs the statements under a savepoint; a refusal rolls all of them back.
    async fn try_source_ddl(
        &mut self,
        statements: &[String],
        record: &DdlRecord<'_>,
    ) -> Result<DdlOutcome, ApplyError> {
        let table = record.dest_table;
        // Opens the transaction and waits until the writer is idle: the statements below run
        // on the same connection, in the same transaction.
        self.execute_ddl(table, SAVEPOINT).await?;
        let client = self.client();
        for sql in statements {
            let Err(e) = client.batch_execute(sql).await else {
                continue;
            };
            let Some(db) = e.as_db_error() else {
                return Err(failed(table)(e));
            };
            let error = format!("{}: {} (in {sql})", db.code().code(), db.message());
            client
                .batch_execute(ROLLBACK_TO)
                .await
                .map_err(failed(table))?;
            return Ok(DdlOutcome::Skipped(error));
        }
        client.batch_execute(RELEASE).await.map_err(failed(table))?;
        Ok(DdlOutcome::Applied)
    }
}

/// What the source change did to each source column of the old mapping.
pub struct SourceChange<'a> {
    /// For a source column index of the old mapping, its index in the new one (`None`: dropped).
    pub moved: &'a dyn Fn(usize) -> Option<usize>,
    /// The value existing rows have in a source column of the new mapping added by this
    /// change (its non-volatile default), by index; `None` when the source computed one value
    /// per row (a volatile default) or there is none.
    pub existing_value: &'a dyn Fn(usize) -> Option<String>,
}

/// The statements that turn the destination table of `old` into that of `new`, in order: the
/// table moved and renamed, the key released, dropped source columns dropped, kept columns
/// renamed, retyped and NOT NULL changed, new columns added (existing rows get the value they
/// have on the source), and the new key.
pub fn schema_change_sql(
    old: &TableMapping,
    new: &TableMapping,
    change: &SourceChange,
) -> Vec<String> {
    let mut out = Vec::new();
    let table = move_table(&old.destination, &new.destination, &mut out);
    let t = table.quoted();
    let matched = |o: &MappedColumn| -> Option<&MappedColumn> {
        new.columns
            .iter()
            .find(|c| match (o.source_index, c.source_index) {
                (Some(i), Some(j)) => (change.moved)(i) == Some(j),
                (None, None) => o.name == c.name,
                _ => false,
            })
    };
    let old_key: Vec<Option<&str>> = old
        .columns
        .iter()
        .filter(|o| o.is_key)
        .map(|o| matched(o).map(|c| c.name.as_str()))
        .collect();
    let new_key: Vec<Option<&str>> = new
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| Some(c.name.as_str()))
        .collect();
    let key_changed = old_key != new_key;
    if key_changed && !old_key.is_empty() {
        out.push(drop_primary_key_sql(&table));
    }
    for o in &old.columns {
        let gone = o.source_index.is_some_and(|i| (change.moved)(i).is_none());
        match matched(o) {
            Some(c) => alter_column(&t, o, c, &mut out),
            None if gone => out.push(format!(
                "ALTER TABLE {t} DROP COLUMN {}",
                quote_ident(&o.name)
            )),
            None if o.not_null && !o.is_key => out.push(format!(
                "ALTER TABLE {t} ALTER COLUMN {} DROP NOT NULL",
                quote_ident(&o.name)
            )),
            None => {}
        }
    }
    for c in &new.columns {
        if !old
            .columns
            .iter()
            .any(|o| matched(o).is_some_and(|m| m.name == c.name))
        {
            let existing = c.source_index.and_then(change.existing_value);
            out.extend(add_column_sql(&t, c, existing));
        }
    }
    if key_changed && !new_key.is_empty() {
        let cols: Vec<String> = new_key.iter().flatten().map(|n| quote_ident(n)).collect();
        out.push(format!(
            "ALTER TABLE {t} ADD PRIMARY KEY ({})",
            cols.join(", ")
        ));
    }
    out
}

/// Creates the destination table of a table created on the source (pgmorph's own).
pub fn create_table_statements(m: &TableMapping) -> Vec<String> {
    vec![
        format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&m.destination.schema)
        ),
        super::ddl::create_table_sql(m),
        super::ddl::owned_table_sql(m),
    ]
}

/// Drops the destination table of a table dropped on the source.
pub fn drop_table_sql(table: &TableName) -> String {
    format!("DROP TABLE IF EXISTS {}", table.quoted())
}

/// Moves and renames the table; returns its name afterwards.
fn move_table(old: &TableName, new: &TableName, out: &mut Vec<String>) -> TableName {
    let mut table = old.clone();
    if new.schema != table.schema {
        out.push(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&new.schema)
        ));
        out.push(format!(
            "ALTER TABLE {} SET SCHEMA {}",
            table.quoted(),
            quote_ident(&new.schema)
        ));
        table.schema = new.schema.clone();
    }
    if new.name != table.name {
        out.push(format!(
            "ALTER TABLE {} RENAME TO {}",
            table.quoted(),
            quote_ident(&new.name)
        ));
        table.name = new.name.clone();
    }
    table
}

/// Renames, retypes and changes NOT NULL of one kept column.
fn alter_column(t: &str, o: &MappedColumn, c: &MappedColumn, out: &mut Vec<String>) {
    let name = quote_ident(&c.name);
    if o.name != c.name {
        out.push(format!(
            "ALTER TABLE {t} RENAME COLUMN {} TO {name}",
            quote_ident(&o.name)
        ));
    }
    if o.type_sql != c.type_sql {
        out.push(format!(
            "ALTER TABLE {t} ALTER COLUMN {name} TYPE {ty} USING {name}::{ty}",
            ty = c.type_sql
        ));
    }
    if o.not_null != c.not_null && !o.is_key && !c.is_key {
        let what = if c.not_null { "SET" } else { "DROP" };
        out.push(format!(
            "ALTER TABLE {t} ALTER COLUMN {name} {what} NOT NULL"
        ));
    }
}

/// Adds a column; existing rows get the value they have on the source (the default is dropped
/// again: changes carry their values). Without one, existing rows get NULL and the column
/// stays nullable.
fn add_column_sql(t: &str, c: &MappedColumn, existing: Option<String>) -> Vec<String> {
    let name = quote_ident(&c.name);
    let mut add = format!("ALTER TABLE {t} ADD COLUMN {name} {}", c.type_sql);
    let Some(value) = existing else {
        return vec![add];
    };
    add.push_str(&format!(" DEFAULT {}", quote_literal(&value)));
    if c.not_null {
        add.push_str(" NOT NULL");
    }
    vec![
        add,
        format!("ALTER TABLE {t} ALTER COLUMN {name} DROP DEFAULT"),
    ]
}

/// Drops the table's primary key, whatever its constraint is called.
fn drop_primary_key_sql(table: &TableName) -> String {
    let t = quote_literal(&table.quoted());
    format!(
        "DO $pk$ DECLARE c text; BEGIN \
         SELECT conname INTO c FROM pg_constraint WHERE conrelid = {t}::regclass AND contype = 'p'; \
         IF c IS NOT NULL THEN EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {t}, c); END IF; \
         END $pk$"
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableSchema};

    fn table(cols: &[(&str, &str, bool, bool)]) -> TableMapping {
        let columns = cols
            .iter()
            .map(|(name, ty, not_null, key)| Column {
                name: (*name).into(),
                type_oid: 0,
                type_modifier: -1,
                type_sql: (*ty).into(),
                not_null: *not_null,
                is_key: *key,
            })
            .collect();
        TableMapping::identity(
            Arc::new(TableSchema {
                oid: 1,
                name: TableName::new("public", "items"),
                columns,
                identity: ReplicaIdentity::Default,
                has_primary_key: true,
            }),
            "dst",
        )
    }

    #[test]
    fn columns_follow_by_attribute_number() {
        // id(1) a(2) b(3) -> drop a, rename b to b2 and retype it, add c with a default.
        let old = table(&[
            ("id", "integer", true, true),
            ("a", "text", false, false),
            ("b", "integer", false, false),
        ]);
        let new = table(&[
            ("id", "integer", true, true),
            ("b2", "bigint", true, false),
            ("c", "integer", false, false),
        ]);
        let moved = |i: usize| [Some(0), None, Some(1)][i];
        let existing = |i: usize| (i == 2).then(|| "7".to_string());
        let sql = schema_change_sql(
            &old,
            &new,
            &SourceChange {
                moved: &moved,
                existing_value: &existing,
            },
        );
        let t = "\"dst\".\"items\"";
        assert_eq!(
            sql,
            [
                format!("ALTER TABLE {t} DROP COLUMN \"a\""),
                format!("ALTER TABLE {t} RENAME COLUMN \"b\" TO \"b2\""),
                format!("ALTER TABLE {t} ALTER COLUMN \"b2\" TYPE bigint USING \"b2\"::bigint"),
                format!("ALTER TABLE {t} ALTER COLUMN \"b2\" SET NOT NULL"),
                format!("ALTER TABLE {t} ADD COLUMN \"c\" integer DEFAULT '7'"),
                format!("ALTER TABLE {t} ALTER COLUMN \"c\" DROP DEFAULT"),
            ]
        );
    }

    #[test]
    fn a_new_key_replaces_the_old_one_and_a_renamed_table_moves() {
        let old = table(&[("id", "integer", true, true), ("k", "integer", true, false)]);
        let mut new = table(&[("id", "integer", true, true), ("k", "integer", true, true)]);
        new.destination = TableName::new("public", "items_v2");
        let moved = |i: usize| Some(i);
        let none = |_: usize| None;
        let sql = schema_change_sql(
            &old,
            &new,
            &SourceChange {
                moved: &moved,
                existing_value: &none,
            },
        );
        assert_eq!(sql[0], "CREATE SCHEMA IF NOT EXISTS \"public\"");
        assert_eq!(
            sql[1],
            "ALTER TABLE \"dst\".\"items\" SET SCHEMA \"public\""
        );
        assert_eq!(
            sql[2],
            "ALTER TABLE \"public\".\"items\" RENAME TO \"items_v2\""
        );
        assert!(
            sql[3].starts_with("DO $pk$") && sql[3].contains("'\"public\".\"items_v2\"'::regclass")
        );
        assert_eq!(
            sql[4],
            "ALTER TABLE \"public\".\"items_v2\" ADD PRIMARY KEY (\"id\", \"k\")"
        );
        assert_eq!(sql.len(), 5);
        assert!(schema_change_sql(
            &old,
            &old,
            &SourceChange {
                moved: &moved,
                existing_value: &none
            }
        )
        .is_empty());
    }
}
