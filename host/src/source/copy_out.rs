//! Reading tables under the exported snapshot with `COPY ... TO STDOUT`.

use tokio_postgres::{Client, CopyOutStream};

use crate::config::ConnectionSettings;
use crate::model::PageRange;
use crate::model::{quote_ident, quote_literal, TableMapping, TableName};

/// A snapshot reader could not be opened or a COPY failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyOutError {
    /// The source refused or failed.
    #[error("snapshot read from the source failed: {0}")]
    Source(#[from] tokio_postgres::Error),
    /// A recorded snapshot could not be read back.
    #[error("{0}")]
    Snapshot(String),
}

/// The snapshot a reader's transaction runs under, as `pg_current_snapshot()` text.
pub async fn reader_snapshot(client: &Client) -> Result<String, CopyOutError> {
    Ok(client
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await?
        .get(0))
}

/// Opens a connection inside a repeatable-read transaction that imported `snapshot`.
pub async fn open_reader(
    settings: &ConnectionSettings,
    snapshot: &str,
) -> Result<Client, CopyOutError> {
    let client = settings.connect("pgmorph snapshot").await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(snapshot)
        ))
        .await?;
    Ok(client)
}

/// Which rows of a table to read.
#[derive(Debug, Clone, Copy)]
pub struct RowFilter<'a> {
    /// The pages to read.
    pub range: &'a PageRange,
    /// Only rows written by transactions this snapshot (`pg_current_snapshot()` text) may
    /// not see: the rows inserted or updated since a copy under that snapshot.
    pub changed_since: Option<&'a str>,
    /// Only rows this snapshot saw (the others of `range`).
    pub unchanged_since: Option<&'a str>,
    /// The relation to read instead of the mapping's source table: one leaf partition of a
    /// partitioned table (whose columns have the same names).
    pub relation: Option<&'a TableName>,
    /// The publication's row filter of the table (`[source.row_filters]`): only the rows the
    /// stream would send.
    pub published: Option<&'a str>,
}

impl<'a> RowFilter<'a> {
    /// Every row of `range`.
    pub fn range(range: &'a PageRange) -> Self {
        Self {
            range,
            changed_since: None,
            unchanged_since: None,
            relation: None,
            published: None,
        }
    }

    /// Every row of `range` of the leaf partition `leaf`.
    pub fn leaf(range: &'a PageRange, leaf: &'a TableName) -> Self {
        Self {
            relation: Some(leaf),
            ..Self::range(range)
        }
    }
}

/// Streams the mapped source columns of a table (or of the rows `filter` selects), in
/// destination order, in COPY text format (or binary with `binary`).
pub async fn copy_table(
    client: &Client,
    mapping: &TableMapping,
    binary: bool,
    filter: RowFilter<'_>,
) -> Result<CopyOutStream, CopyOutError> {
    let sql = copy_out_sql(mapping, binary, filter).map_err(CopyOutError::Snapshot)?;
    Ok(client.copy_out(&sql).await?)
}

/// Streams the source columns of the mapping's key, in destination order, of every row (of
/// every row the publication's filter `published` selects).
pub async fn copy_keys(
    client: &Client,
    mapping: &TableMapping,
    binary: bool,
    published: Option<&str>,
) -> Result<CopyOutStream, CopyOutError> {
    let cols: Vec<String> = mapping
        .columns
        .iter()
        .filter(|c| c.is_key)
        .filter_map(|c| c.source_index)
        .map(|i| quote_ident(&mapping.source.columns[i].name))
        .collect();
    let format = if binary { " (FORMAT binary)" } else { "" };
    let filter = published.map_or_else(String::new, |f| format!(" WHERE ({f})"));
    let sql = format!(
        "COPY (SELECT {} FROM ONLY {}{filter}) TO STDOUT{format}",
        cols.join(", "),
        mapping.source.name.quoted()
    );
    Ok(client.copy_out(&sql).await?)
}

/// The `COPY ... TO STDOUT` statement of [`copy_table`]: the table itself when whole, else a
/// query of the selected rows (of this table only, not of inheriting children).
fn copy_out_sql(
    mapping: &TableMapping,
    binary: bool,
    filter: RowFilter<'_>,
) -> Result<String, String> {
    let cols: Vec<String> = mapping
        .columns
        .iter()
        .filter_map(|c| c.source_index)
        .map(|i| quote_ident(&mapping.source.columns[i].name))
        .collect();
    let format = if binary { " (FORMAT binary)" } else { "" };
    let table = filter.relation.unwrap_or(&mapping.source.name).quoted();
    let mut conditions = Vec::new();
    if !filter.range.is_whole() {
        conditions.push(filter.range.predicate());
    }
    if let Some(snapshot) = filter.changed_since {
        conditions.push(changed_since(snapshot)?);
    }
    if let Some(snapshot) = filter.unchanged_since {
        conditions.push(format!("NOT {}", changed_since(snapshot)?));
    }
    if let Some(published) = filter.published {
        conditions.push(format!("({published})"));
    }
    let cols = cols.join(", ");
    Ok(match (conditions.is_empty(), filter.relation.is_some()) {
        (true, false) => format!("COPY {table} ({cols}) TO STDOUT{format}"),
        (true, true) => format!("COPY (SELECT {cols} FROM ONLY {table}) TO STDOUT{format}"),
        (false, _) => format!(
            "COPY (SELECT {cols} FROM ONLY {table} WHERE {}) TO STDOUT{format}",
            conditions.join(" AND ")
        ),
    })
}

/// Of several recorded snapshots (`pg_current_snapshot()` text), the one with the oldest
/// `xmin`: every row it saw, the others saw too.
pub fn oldest_snapshot<'a>(snapshots: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    snapshots.into_iter().min_by_key(|s| {
        s.split(':')
            .next()
            .and_then(|x| x.trim().parse::<u64>().ok())
            .unwrap_or(0)
    })
}

/// The condition selecting every row whose inserting transaction `snapshot` (the text of
/// `pg_current_snapshot()`, `xmin:xmax:xip,...`) may not see: any transaction id from the
/// snapshot's `xmin` (the oldest one running when it was taken) on. Rows written by
/// subtransactions of a transaction running then are among them (a subtransaction's id is newer
/// than its parent's), although the snapshot's `xip` list does not name them; a few rows the
/// snapshot did see may be included too, which merging by key makes harmless. Row `xmin`s are
/// 32-bit, so the comparison goes through `age()` (distances from the same next transaction id
/// within the reading transaction): wraparound-safe, and frozen rows count as the oldest.
fn changed_since(snapshot: &str) -> Result<String, String> {
    let bad = || format!("cannot read the recorded snapshot {snapshot:?}");
    let mut parts = snapshot.split(':');
    let (Some(xmin), Some(_xmax), Some(_xip), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let xmin = xmin.trim().parse::<u64>().map_err(|_| bad())? % (1 << 32);
    Ok(format!("age(xmin) <= age('{xmin}'::xid)"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableSchema};

    #[test]
    fn a_range_reads_only_its_pages_of_the_table_itself() {
        let col = |name: &str| Column {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            type_sql: "integer".into(),
            not_null: false,
            is_key: name == "id",
        };
        let mapping = TableMapping::identity(
            Arc::new(TableSchema {
                oid: 1,
                name: TableName::new("public", "t"),
                columns: vec![col("id"), col("n")],
                identity: ReplicaIdentity::Default,
                has_primary_key: true,
            }),
            "dst",
        );
        assert_eq!(
            copy_out_sql(&mapping, false, RowFilter::range(&PageRange::WHOLE)).unwrap(),
            "COPY \"public\".\"t\" (\"id\", \"n\") TO STDOUT"
        );
        let last = PageRange {
            start: Some(10),
            end: None,
        };
        let changed = RowFilter {
            range: &last,
            changed_since: Some("4294967300:4294967305:4294967301,4294967303"),
            unchanged_since: None,
            relation: None,
            published: None,
        };
        assert_eq!(
            copy_out_sql(&mapping, false, changed).unwrap(),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t\" WHERE ctid >= '(10,0)'::tid \
             AND age(xmin) <= age('4'::xid)) TO STDOUT"
        );
        let unchanged = RowFilter {
            range: &PageRange::WHOLE,
            changed_since: None,
            unchanged_since: Some("7:9:"),
            relation: None,
            published: None,
        };
        assert_eq!(
            copy_out_sql(&mapping, false, unchanged).unwrap(),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t\" WHERE \
             NOT age(xmin) <= age('7'::xid)) TO STDOUT"
        );
        assert!(changed_since("12:13").is_err());
        assert!(changed_since("x:13:").is_err());
        assert_eq!(
            changed_since("12:13:").unwrap(),
            "age(xmin) <= age('12'::xid)"
        );
        assert_eq!(
            copy_out_sql(&mapping, true, RowFilter::range(&last)).unwrap(),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t\" WHERE ctid >= '(10,0)'::tid) \
             TO STDOUT (FORMAT binary)"
        );
        let leaf = TableName::new("public", "t_2024");
        assert_eq!(
            copy_out_sql(&mapping, false, RowFilter::leaf(&last, &leaf)).unwrap(),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t_2024\" WHERE \
             ctid >= '(10,0)'::tid) TO STDOUT"
        );
        assert_eq!(
            copy_out_sql(&mapping, false, RowFilter::leaf(&PageRange::WHOLE, &leaf)).unwrap(),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t_2024\") TO STDOUT"
        );
        let filtered = RowFilter {
            published: Some("n > 100"),
            ..RowFilter::range(&PageRange::WHOLE)
        };
        assert_eq!(
            copy_out_sql(&mapping, false, filtered).unwrap(),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t\" WHERE (n > 100)) TO STDOUT"
        );
        let filtered_range = RowFilter {
            published: Some("n > 100"),
            ..RowFilter::leaf(&last, &leaf)
        };
        assert_eq!(
            copy_out_sql(&mapping, false, filtered_range).unwrap(),
            "COPY (SELECT \"id\", \"n\" FROM ONLY \"public\".\"t_2024\" WHERE \
             ctid >= '(10,0)'::tid AND (n > 100)) TO STDOUT"
        );
    }
}
