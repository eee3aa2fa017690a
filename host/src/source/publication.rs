//! The connector's publication: its tables and their row filters (PostgreSQL 15+), created or
//! updated in one source transaction that is rolled back, changing nothing, when a filter
//! would change under a running replication or would use a column outside the table's replica
//! identity (UPDATE and DELETE on the table would then fail on the source).

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::versions;
use crate::config::RowFilters;
use crate::model::{quote_ident, TableName};

/// The publication could not be set up as the config asks.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    /// A query failed.
    #[error("preparing the source publication failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// A row filter names a table that is not replicated.
    #[error(
        "source.row_filters names {0}, which is not among the replicated tables: correct the \
         table name (schema-qualified) or select the table in source.tables or source.schema"
    )]
    NotSelected(TableName),
    /// A table's filter differs from the one the publication already applies.
    #[error(
        "the row filter of {table} would change: publication {publication} publishes {published} \
         and the config asks for {wanted}. Rows copied under the old filter would disagree with \
         the stream, so nothing was changed. Either put the old filter back in \
         [source.row_filters], or copy every table again under the new one: \
         `pgmorph run --mode always` once (the slot is kept), or `pgmorph reset` then \
         `pgmorph run`",
        table = .0.table, publication = .0.publication, published = .0.published, wanted = .0.wanted
    )]
    FilterChanged(Box<FilterChange>),
    /// A filter uses a column that UPDATE and DELETE records do not carry.
    #[error(
        "the row filter of {table} ({filter}) uses {columns}, outside its replica identity \
         ({identity}): once published, every UPDATE and DELETE on {table} would fail on the \
         source. Nothing was changed. Filter on replica identity columns only, or run \
         ALTER TABLE {quoted} REPLICA IDENTITY FULL on the source",
        table = .0.table, filter = .0.filter, columns = .0.columns, identity = .0.identity,
        quoted = .0.table.quoted()
    )]
    FilterOutsideIdentity(Box<OutsideIdentity>),
}

/// A table's row filter as published and as wanted.
#[derive(Debug)]
pub struct FilterChange {
    /// The table.
    pub table: TableName,
    /// The publication.
    pub publication: String,
    /// The filter it applies now, as the source prints it (or "every row").
    pub published: String,
    /// The filter the config asks for, as the source prints it (or "every row").
    pub wanted: String,
}

/// A row filter using columns outside the table's replica identity.
#[derive(Debug)]
pub struct OutsideIdentity {
    /// The table.
    pub table: TableName,
    /// The filter, as the source prints it.
    pub filter: String,
    /// The columns outside the replica identity.
    pub columns: String,
    /// The replica identity, in words.
    pub identity: String,
}

/// What the publication should be.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The publication's name.
    pub name: &'a str,
    /// The tables it publishes.
    pub tables: &'a [TableName],
    /// Row filters of some of them.
    pub filters: &'a RowFilters,
    /// `publish_via_partition_root`.
    pub via_root: bool,
    /// Refuse to change the filter of a table the publication already publishes (the slot
    /// exists and the tables will not all be copied again).
    pub keep_filters: bool,
    /// The source's `server_version_num`.
    pub server_version_num: u32,
}

/// A published table as the source shows it (PostgreSQL 15+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The row filter, as the source prints it; `None`: every row.
    pub filter: Option<String>,
    /// The columns the filter uses.
    pub filter_columns: Vec<String>,
    /// Whether the table has `REPLICA IDENTITY FULL`.
    pub full_identity: bool,
    /// The replica identity's columns (primary key or identity index).
    pub identity_columns: Vec<String>,
}

/// Creates the publication or makes it publish exactly `wanted.tables` with their filters;
/// with `commit` false, checks the same and changes nothing. Returns the published tables
/// (empty before PostgreSQL 15, which has no row filters).
pub async fn ensure(
    client: &Client,
    wanted: &Wanted<'_>,
    commit: bool,
) -> Result<BTreeMap<TableName, Published>, PublicationError> {
    if let Some(stray) = wanted.filters.keys().find(|t| !wanted.tables.contains(t)) {
        return Err(PublicationError::NotSelected(stray.clone()));
    }
    client.batch_execute("BEGIN").await?;
    let result = publish(client, wanted).await;
    let end = match (&result, commit) {
        (Ok(_), true) => "COMMIT",
        _ => "ROLLBACK",
    };
    client.batch_execute(end).await?;
    result
}

async fn publish(
    client: &Client,
    wanted: &Wanted<'_>,
) -> Result<BTreeMap<TableName, Published>, PublicationError> {
    let filters_known = wanted.server_version_num >= versions::ROW_FILTERS;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&wanted.name],
        )
        .await?
        .is_some();
    let before = match exists && filters_known {
        true => published(client, wanted.name).await?,
        false => BTreeMap::new(),
    };
    client
        .batch_execute(&publication_sql(wanted, exists))
        .await?;
    if !filters_known {
        return Ok(BTreeMap::new());
    }
    let after = published(client, wanted.name).await?;
    if wanted.keep_filters {
        check_unchanged(wanted.name, &before, &after)?;
    }
    for (table, p) in &after {
        check_identity(table, p)?;
    }
    Ok(after)
}

/// `CREATE PUBLICATION` or `ALTER PUBLICATION ... SET TABLE`, each table with its filter.
fn publication_sql(wanted: &Wanted<'_>, exists: bool) -> String {
    let list: Vec<String> = wanted
        .tables
        .iter()
        .map(|t| match wanted.filters.get(t) {
            Some(filter) => format!("{} WHERE ({filter})", t.quoted()),
            None => t.quoted(),
        })
        .collect();
    let list = list.join(", ");
    let name = quote_ident(wanted.name);
    let option = format!("publish_via_partition_root = {}", wanted.via_root);
    if exists {
        format!(
            "ALTER PUBLICATION {name} SET TABLE {list}; ALTER PUBLICATION {name} SET ({option})"
        )
    } else {
        format!("CREATE PUBLICATION {name} FOR TABLE {list} WITH ({option})")
    }
}

/// The tables listed in the publication with their filters, the columns each filter uses
/// (the dependencies PostgreSQL records for it) and the table's replica identity.
async fn published(
    client: &Client,
    name: &str,
) -> Result<BTreeMap<TableName, Published>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, pg_get_expr(pr.prqual, pr.prrelid), \
                    c.relreplident = 'f', \
                    ARRAY(SELECT a.attname::text FROM pg_depend d \
                          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                          WHERE d.classid = 'pg_publication_rel'::regclass AND d.objid = pr.oid \
                            AND d.refclassid = 'pg_class'::regclass AND d.refobjid = pr.prrelid \
                            AND d.refobjsubid > 0 ORDER BY a.attnum), \
                    ARRAY(SELECT a.attname::text FROM pg_index i \
                          JOIN pg_attribute a ON a.attrelid = i.indrelid \
                           AND a.attnum = ANY(i.indkey::int2[]) \
                          WHERE i.indrelid = c.oid AND CASE c.relreplident \
                            WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident \
                            ELSE false END ORDER BY a.attnum) \
             FROM pg_publication_rel pr \
             JOIN pg_publication p ON p.oid = pr.prpubid \
             JOIN pg_class c ON c.oid = pr.prrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE p.pubname = $1",
            &[&name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let table = TableName::new(r.get::<_, String>(0), r.get::<_, String>(1));
            let p = Published {
                filter: r.get(2),
                full_identity: r.get(3),
                filter_columns: r.get(4),
                identity_columns: r.get(5),
            };
            (table, p)
        })
        .collect())
}

fn filter_words(filter: Option<&String>) -> String {
    filter.map_or_else(|| "every row".to_string(), |f| format!("WHERE {f}"))
}

/// Refuses a changed filter of a table that was published before.
fn check_unchanged(
    publication: &str,
    before: &BTreeMap<TableName, Published>,
    after: &BTreeMap<TableName, Published>,
) -> Result<(), PublicationError> {
    for (table, now) in after {
        let Some(then) = before.get(table) else {
            continue; // newly published: its copy follows the new filter
        };
        if then.filter != now.filter {
            return Err(PublicationError::FilterChanged(Box::new(FilterChange {
                table: table.clone(),
                publication: publication.to_string(),
                published: filter_words(then.filter.as_ref()),
                wanted: filter_words(now.filter.as_ref()),
            })));
        }
    }
    Ok(())
}

/// Refuses a filter using a column UPDATE and DELETE records do not carry.
fn check_identity(table: &TableName, p: &Published) -> Result<(), PublicationError> {
    let Some(filter) = &p.filter else {
        return Ok(());
    };
    if p.full_identity {
        return Ok(());
    }
    let outside: Vec<&str> = p
        .filter_columns
        .iter()
        .filter(|c| !p.identity_columns.contains(c))
        .map(String::as_str)
        .collect();
    if outside.is_empty() {
        return Ok(());
    }
    let identity = match p.identity_columns.is_empty() {
        true => "none".to_string(),
        false => p.identity_columns.join(", "),
    };
    Err(PublicationError::FilterOutsideIdentity(Box::new(
        OutsideIdentity {
            table: table.clone(),
            filter: filter.clone(),
            columns: format!("column {}", outside.join(", ")),
            identity,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(filter: Option<&str>, uses: &[&str], identity: &[&str]) -> Published {
        Published {
            filter: filter.map(str::to_string),
            filter_columns: uses.iter().map(|c| c.to_string()).collect(),
            full_identity: false,
            identity_columns: identity.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn publication_sql_puts_each_filter_on_its_table() {
        let tables = [TableName::new("public", "orders"), TableName::new("s", "t")];
        let filters: RowFilters = [(tables[0].clone(), "amount > 100".to_string())].into();
        let wanted = Wanted {
            name: "pgmorph_c",
            tables: &tables,
            filters: &filters,
            via_root: true,
            keep_filters: true,
            server_version_num: 150_000,
        };
        assert_eq!(
            publication_sql(&wanted, false),
            "CREATE PUBLICATION \"pgmorph_c\" FOR TABLE \"public\".\"orders\" WHERE (amount > 100), \
             \"s\".\"t\" WITH (publish_via_partition_root = true)"
        );
        assert_eq!(
            publication_sql(&wanted, true),
            "ALTER PUBLICATION \"pgmorph_c\" SET TABLE \"public\".\"orders\" WHERE (amount > 100), \
             \"s\".\"t\"; ALTER PUBLICATION \"pgmorph_c\" SET (publish_via_partition_root = true)"
        );
    }

    #[test]
    fn a_changed_filter_of_a_published_table_is_refused() {
        let t = TableName::new("public", "orders");
        let old: BTreeMap<_, _> =
            [(t.clone(), published(Some("(id > 1)"), &["id"], &["id"]))].into();
        let same = old.clone();
        assert!(check_unchanged("p", &old, &same).is_ok());
        let new: BTreeMap<_, _> =
            [(t.clone(), published(Some("(id > 2)"), &["id"], &["id"]))].into();
        let err = check_unchanged("p", &old, &new).unwrap_err().to_string();
        assert!(
            err.contains("WHERE (id > 1)")
                && err.contains("WHERE (id > 2)")
                && err.contains("--mode always"),
            "{err}"
        );
        let none: BTreeMap<_, _> = [(t.clone(), published(None, &[], &["id"]))].into();
        let err = check_unchanged("p", &old, &none).unwrap_err().to_string();
        assert!(err.contains("every row"), "{err}");
        assert!(
            check_unchanged("p", &BTreeMap::new(), &new).is_ok(),
            "newly published"
        );
    }

    #[test]
    fn a_filter_outside_the_replica_identity_is_refused() {
        let t = TableName::new("public", "orders");
        assert!(check_identity(&t, &published(Some("(id > 1)"), &["id"], &["id"])).is_ok());
        assert!(check_identity(&t, &published(None, &[], &[])).is_ok());
        let outside = published(Some("(amount > 1)"), &["amount"], &["id"]);
        let err = check_identity(&t, &outside).unwrap_err().to_string();
        assert!(
            err.contains("column amount")
                && err.contains("(id)")
                && err.contains("REPLICA IDENTITY FULL"),
            "{err}"
        );
        let full = Published {
            full_identity: true,
            ..outside
        };
        assert!(check_identity(&t, &full).is_ok());
    }
}
