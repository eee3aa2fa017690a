//! `pgmorph.ddl_history`: every source DDL command applied to the destination, written in the
//! destination transaction that applies it; and the state rows that follow a renamed source
//! table.

use crate::model::{quote_literal, TableName};

/// One applied source DDL command.
#[derive(Debug)]
pub struct DdlRecord<'a> {
    /// The connector.
    pub connector: &'a str,
    /// Commit LSN of the source transaction.
    pub lsn: String,
    /// The source table, after the command (before it for a dropped table).
    pub source_table: &'a TableName,
    /// The destination table, after the command.
    pub dest_table: &'a TableName,
    /// The source command tag.
    pub tag: &'a str,
    /// The source statement.
    pub statement: &'a str,
    /// What was run on the destination.
    pub applied: &'a [String],
}

fn text_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote_literal(s)).collect();
    format!("ARRAY[{}]::text[]", quoted.join(", "))
}

/// The INSERT of one history row (run by the sink inside the applying transaction);
/// `skipped`: the error of a command skipped under `on_ddl_error = "skip"`.
pub(crate) fn record_sql(r: &DdlRecord, skipped: Option<&str>) -> String {
    format!(
        "INSERT INTO pgmorph.ddl_history \
         (connector, lsn, source_table, dest_table, tag, statement, applied, skipped, error) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
        quote_literal(r.connector),
        quote_literal(&r.lsn),
        quote_literal(&r.source_table.to_string()),
        quote_literal(&r.dest_table.to_string()),
        quote_literal(r.tag),
        quote_literal(r.statement),
        text_array(r.applied),
        skipped.is_some(),
        skipped.map_or("NULL".to_string(), quote_literal),
    )
}

/// Records a table created on the source as streaming from its creation on.
pub(crate) fn new_table_sql(connector: &str, source: &TableName, dest: &TableName) -> String {
    format!(
        "INSERT INTO pgmorph.tables (connector, source_table, dest_table, phase) \
         VALUES ({}, {}, {}, 'streaming') ON CONFLICT (connector, source_table) \
         DO UPDATE SET dest_table = EXCLUDED.dest_table, phase = 'streaming'",
        quote_literal(connector),
        quote_literal(&source.to_string()),
        quote_literal(&dest.to_string()),
    )
}

/// Moves a table's state rows to its new source and destination names (a renamed or moved
/// source table keeps its phase and copy position).
pub(crate) fn rename_sql(
    connector: &str,
    old: &TableName,
    new: &TableName,
    dest: &TableName,
) -> String {
    format!(
        "UPDATE pgmorph.tables SET source_table = {new}, dest_table = {dest} \
         WHERE connector = {c} AND source_table = {old}; \
         DELETE FROM pgmorph.attributes WHERE connector = {c} AND source_table = {old}",
        c = quote_literal(connector),
        old = quote_literal(&old.to_string()),
        new = quote_literal(&new.to_string()),
        dest = quote_literal(&dest.to_string()),
    )
}

/// What `pgmorph status` shows of a connector's source DDL.
#[derive(Debug, Default, serde::Serialize)]
pub struct DdlSummary {
    /// Commands applied.
    pub applied: i64,
    /// The last command applied or skipped (`tag table at time`).
    pub last: Option<String>,
    /// Commands skipped under `on_ddl_error = "skip"`.
    pub skipped: i64,
    /// The last one skipped (`tag table at time: error`).
    pub last_skipped: Option<String>,
}

/// The source DDL connector `name` followed and skipped, for `pgmorph status`.
pub async fn summary(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<DdlSummary, super::StateError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT skipped), count(*) FILTER (WHERE skipped), \
                (SELECT tag || ' ' || source_table || ' at ' || applied_at::text \
                 FROM pgmorph.ddl_history WHERE connector = $1 ORDER BY id DESC LIMIT 1), \
                (SELECT tag || ' ' || source_table || ' at ' || applied_at::text || ': ' || error \
                 FROM pgmorph.ddl_history WHERE connector = $1 AND skipped \
                 ORDER BY id DESC LIMIT 1) \
             FROM pgmorph.ddl_history WHERE connector = $1",
            &[&name],
        )
        .await?;
    Ok(DdlSummary {
        applied: row.get(0),
        skipped: row.get(1),
        last: row.get(2),
        last_skipped: row.get(3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_rows_quote_everything() {
        let (s, d) = (TableName::new("public", "it's"), TableName::new("x", "y"));
        let record = DdlRecord {
            connector: "c",
            lsn: "0/10".into(),
            source_table: &s,
            dest_table: &d,
            tag: "ALTER TABLE",
            statement: "ALTER TABLE \"it's\" ADD c int",
            applied: &["ALTER TABLE x.y ADD COLUMN c integer DEFAULT ('a')".into()],
        };
        let sql = record_sql(&record, None);
        assert!(sql.contains("'public.it''s'"), "{sql}");
        assert!(
            sql.contains("ARRAY['ALTER TABLE x.y ADD COLUMN c integer DEFAULT (''a'')']::text[]"),
            "{sql}"
        );
        assert!(sql.ends_with(", false, NULL)"), "{sql}");
        let sql = record_sql(&record, Some("42804: it's refused"));
        assert!(sql.ends_with(", true, '42804: it''s refused')"), "{sql}");
    }
}
