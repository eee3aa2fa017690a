//! Reading the source's sequences: their definition, current value and the column owning them.

use tokio_postgres::Client;

use crate::model::TableName;

/// A source sequence and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSequence {
    /// Its schema-qualified name.
    pub name: TableName,
    /// The column owning it (`serial`, identity, or `OWNED BY`): table and column name.
    pub owner: Option<(TableName, String)>,
    /// How it is declared (`AS bigint INCREMENT BY 1 ...`), to create it on the destination.
    pub definition: String,
    /// `last_value`.
    pub last_value: i64,
    /// Whether `last_value` was handed out (else the next value is `last_value` itself).
    pub is_called: bool,
}

/// The sequences of `schemas` and those owned by a column of `tables` (source names), in name
/// order, with their current values.
pub async fn read(
    client: &Client,
    schemas: &[String],
    tables: &[String],
) -> Result<Vec<SourceSequence>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, tn.nspname::text, t.relname::text, a.attname::text, \
                    format('AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s%s', \
                           s.seqtypid::regtype, s.seqincrement, s.seqmin, s.seqmax, s.seqstart, \
                           CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_sequence s ON s.seqrelid = c.oid \
             LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
             LEFT JOIN pg_class t ON t.oid = d.refobjid \
             LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace \
             LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE c.relkind = 'S' AND (n.nspname = ANY($1) \
                   OR (tn.nspname || '.' || t.relname) = ANY($2)) \
             ORDER BY 1, 2",
            &[&schemas, &tables],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name = TableName::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let owner = match (r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3)) {
            (Some(schema), Some(table)) => r
                .get::<_, Option<String>>(4)
                .map(|column| (TableName::new(schema, table), column)),
            _ => None,
        };
        let value = client
            .query_one(
                &format!("SELECT last_value, is_called FROM {}", name.quoted()),
                &[],
            )
            .await?;
        out.push(SourceSequence {
            name,
            owner,
            definition: r.get(5),
            last_value: value.get(0),
            is_called: value.get(1),
        });
    }
    Ok(out)
}

/// The name PostgreSQL gives the sequence of a `serial` or identity column.
pub fn default_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_seq")
}
