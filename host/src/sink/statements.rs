//! The SQL the sink sends for row changes, with their parameters in the form the source sent
//! the values (text, or binary for the same type on both sides).

use bytes::{BufMut, Bytes, BytesMut};

use super::params::Param;
use crate::model::{quote_ident, Cell, MappedColumn, Row, TableMapping};

/// A statement and its parameters.
pub(crate) struct Built {
    /// SQL text (prepared once per distinct text).
    pub sql: String,
    /// Parameters, text or binary.
    pub params: Vec<Param>,
}

/// Why a change cannot become SQL.
pub(crate) type Unusable = String;

pub(crate) fn param(cell: &Cell) -> Param {
    match cell {
        Cell::Text(b) => Param::Text(b.clone()),
        Cell::Binary(b) => Param::Binary(b.clone()),
        _ => Param::Null,
    }
}

/// `INSERT INTO t (columns) VALUES ($1, ...)`.
pub(crate) fn insert(m: &TableMapping, row: &Row) -> Built {
    let cols: Vec<String> = m.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    Built {
        sql: format!(
            "INSERT INTO {} ({}) VALUES ({})",
            m.destination.quoted(),
            cols.join(", "),
            marks.join(", ")
        ),
        params: row.iter().map(param).collect(),
    }
}

/// `UPDATE t SET ... WHERE key`; `None` when nothing but unchanged TOAST values would be set.
/// Key columns are left out of the SET list when the key did not change (no old row).
pub(crate) fn update(
    m: &TableMapping,
    old: Option<&Row>,
    new: &Row,
) -> Result<Option<Built>, Unusable> {
    let mut sql = format!("UPDATE {} SET ", m.destination.quoted());
    let mut params = Vec::new();
    for (i, c) in m.columns.iter().enumerate() {
        if matches!(new[i], Cell::Unchanged) || (old.is_none() && c.is_key) {
            continue;
        }
        if !params.is_empty() {
            sql.push_str(", ");
        }
        params.push(param(&new[i]));
        sql.push_str(&format!("{} = ${}", quote_ident(&c.name), params.len()));
    }
    if params.is_empty() {
        return Ok(None);
    }
    where_clause(m, old.unwrap_or(new), &mut sql, &mut params)?;
    Ok(Some(Built { sql, params }))
}

/// `DELETE FROM t WHERE key`.
pub(crate) fn delete(m: &TableMapping, old: &Row) -> Result<Built, Unusable> {
    let mut sql = format!("DELETE FROM {}", m.destination.quoted());
    let mut params = Vec::new();
    where_clause(m, old, &mut sql, &mut params)?;
    Ok(Built { sql, params })
}

/// The single key column's index, when the table has exactly one.
pub(crate) fn single_key(m: &TableMapping) -> Option<usize> {
    let keys = m.key_indexes();
    (keys.len() == 1).then(|| keys[0])
}

/// `DELETE FROM t WHERE key = ANY($1)` for many rows of a single-key table; `None` when the
/// key values do not fit one array (binary values of an array type, or text and binary mixed).
pub(crate) fn delete_many(
    m: &TableMapping,
    key: usize,
    olds: &[Row],
) -> Result<Option<Built>, Unusable> {
    let c = &m.columns[key];
    let cells: Vec<&Cell> = olds.iter().map(|old| &old[key]).collect();
    if cells.iter().any(|cell| cell.value().is_none()) {
        return Err(format!("key column {} has no value", c.name));
    }
    let Some(array) = column_array(c, cells.into_iter()) else {
        return Ok(None);
    };
    Ok(Some(Built {
        sql: format!(
            "DELETE FROM {} WHERE {} = ANY({})",
            m.destination.quoted(),
            quote_ident(&c.name),
            array.sql(1)
        ),
        params: vec![array.param],
    }))
}

/// One column's values as one array parameter: text (cast per value, so array-typed columns
/// work too), or binary of the column's type.
struct ColumnArray<'a> {
    param: Param,
    /// The column's SQL type.
    ty: &'a str,
    binary: bool,
}

impl ColumnArray<'_> {
    /// The array as the `n`th parameter, elements of the column's type.
    fn sql(&self, n: usize) -> String {
        match self.binary {
            true => format!("${n}::{}[]", self.ty),
            false => format!("${n}::text::{}[]", self.ty.trim_end_matches("[]")),
        }
    }

    /// The array as the `n`th argument of `unnest`, and its element `alias` as a value of the
    /// column's type.
    fn unnest(&self, n: usize, alias: &str) -> (String, String) {
        match self.binary {
            true => (self.sql(n), alias.to_string()),
            false => (format!("${n}::text[]"), format!("{alias}::{}", self.ty)),
        }
    }
}

/// The cells of one column as an array parameter; `None` when they mix text and binary
/// values, or are binary values of an array type (one array parameter cannot hold arrays).
fn column_array<'a, 'c>(
    c: &'a MappedColumn,
    cells: impl Iterator<Item = &'c Cell> + Clone,
) -> Option<ColumnArray<'a>> {
    let binary = cells.clone().any(Cell::is_binary);
    let param = match binary {
        false => Param::Text(array_of_cells(cells)),
        true if c.type_sql.ends_with("[]") => return None,
        true if cells.clone().any(|cell| matches!(cell, Cell::Text(_))) => return None,
        true => Param::BinaryArray(cells.map(|cell| cell.value().cloned()).collect()),
    };
    Some(ColumnArray {
        param,
        ty: &c.type_sql,
        binary,
    })
}

/// Whether a run of updates of this table may become one set-based statement: it has a key.
pub(crate) fn updates_batchable(m: &TableMapping) -> bool {
    !m.key_indexes().is_empty()
}

/// The columns an update sets: every non-key column whose value was sent.
pub(crate) fn update_shape(m: &TableMapping, new: &Row) -> Vec<bool> {
    m.columns
        .iter()
        .enumerate()
        .map(|(i, c)| !c.is_key && !matches!(new[i], Cell::Unchanged))
        .collect()
}

/// The columns an update of `shape` names: the key columns and the ones it sets.
fn used_columns(m: &TableMapping, shape: &[bool]) -> Vec<usize> {
    (0..m.columns.len())
        .filter(|&i| m.columns[i].is_key || shape[i])
        .collect()
}

/// `UPDATE t AS t SET ... FROM {source} AS v(a0, ...) WHERE key`, where `v.a{n}` (as
/// `values[n]` reads it) is the value of column `used[n]`.
fn update_from(m: &TableMapping, used: &[usize], values: &[String], source: &str) -> String {
    let aliases: Vec<String> = (0..used.len()).map(|n| format!("a{n}")).collect();
    let mut sets = Vec::new();
    let mut conds = Vec::new();
    for (&i, value) in used.iter().zip(values) {
        let col = quote_ident(&m.columns[i].name);
        match m.columns[i].is_key {
            true => conds.push(format!("t.{col} = {value}")),
            false => sets.push(format!("{col} = {value}")),
        }
    }
    format!(
        "UPDATE {} AS t SET {} FROM {source} AS v({}) WHERE {}",
        m.destination.quoted(),
        sets.join(", "),
        aliases.join(", "),
        conds.join(" AND ")
    )
}

/// One `UPDATE t SET ... FROM unnest(...) v WHERE key` for many rows with the same shape and
/// distinct keys (whose keys did not change); `None` when a column's values do not fit one
/// array ([`column_array`]).
pub(crate) fn update_many(m: &TableMapping, shape: &[bool], rows: &[Row]) -> Option<Built> {
    let used = used_columns(m, shape);
    let mut arrays = Vec::with_capacity(used.len());
    let mut values = Vec::with_capacity(used.len());
    let mut params = Vec::with_capacity(used.len());
    for (n, &i) in used.iter().enumerate() {
        let array = column_array(&m.columns[i], rows.iter().map(|r| &r[i]))?;
        let (arg, value) = array.unnest(n + 1, &format!("v.a{n}"));
        arrays.push(arg);
        values.push(value);
        params.push(array.param);
    }
    let source = format!("unnest({})", arrays.join(", "));
    Some(Built {
        sql: update_from(m, &used, &values, &source),
        params,
    })
}

/// Rows in one [`update_values`] statement, at most: 64, fewer for wide rows (a statement
/// takes at most 65,535 parameters).
pub(crate) fn values_rows_max(m: &TableMapping, shape: &[bool]) -> usize {
    let per_row = used_columns(m, shape).len().max(1);
    (u16::MAX as usize / per_row).clamp(1, 64)
}

/// One `UPDATE t SET ... FROM (VALUES (...), ...) v WHERE key` for rows with the same shape
/// and distinct keys (whose keys did not change), each value a parameter of the column's type:
/// for values no array parameter can hold.
pub(crate) fn update_values(m: &TableMapping, shape: &[bool], rows: &[Row]) -> Built {
    let used = used_columns(m, shape);
    let mut params = Vec::with_capacity(rows.len() * used.len());
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let marks: Vec<String> = used
            .iter()
            .map(|&i| {
                params.push(param(&row[i]));
                format!("${}::{}", params.len(), m.columns[i].type_sql)
            })
            .collect();
        tuples.push(format!("({})", marks.join(", ")));
    }
    let values: Vec<String> = (0..used.len()).map(|n| format!("v.a{n}")).collect();
    let source = format!("(VALUES {})", tuples.join(", "));
    Built {
        sql: update_from(m, &used, &values, &source),
        params,
    }
}

/// An array literal of cells: text quoted, NULL bare.
fn array_of_cells<'a>(cells: impl Iterator<Item = &'a Cell>) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(b'{');
    for (n, cell) in cells.enumerate() {
        if n > 0 {
            out.put_u8(b',');
        }
        match cell {
            Cell::Text(v) => quote_element(&mut out, v),
            Cell::Binary(_) => unreachable!("binary values travel in binary arrays"),
            Cell::Null | Cell::Unchanged => out.put_slice(b"NULL"),
        }
    }
    out.put_u8(b'}');
    out.freeze()
}

fn quote_element(out: &mut BytesMut, v: &[u8]) {
    out.put_u8(b'"');
    for &b in v {
        if b == b'"' || b == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(b);
    }
    out.put_u8(b'"');
}

/// Appends the WHERE clause identifying `old`: key columns, or every sent column (compared as
/// text, one row only) when the table has no key.
fn where_clause(
    m: &TableMapping,
    old: &Row,
    sql: &mut String,
    params: &mut Vec<Param>,
) -> Result<(), Unusable> {
    let keys = m.key_indexes();
    if !keys.is_empty() {
        sql.push_str(" WHERE ");
        for (n, &i) in keys.iter().enumerate() {
            if n > 0 {
                sql.push_str(" AND ");
            }
            if old[i].value().is_none() {
                return Err(format!("key column {} has no value", m.columns[i].name));
            }
            params.push(param(&old[i]));
            sql.push_str(&format!(
                "{} = ${}",
                quote_ident(&m.columns[i].name),
                params.len()
            ));
        }
        return Ok(());
    }
    let mut conds = Vec::new();
    for (i, c) in m.columns.iter().enumerate() {
        if matches!(old[i], Cell::Unchanged) {
            continue;
        }
        params.push(param(&old[i]));
        // A binary value is read as the column's type, then compared as text like the others.
        let cast = if old[i].is_binary() {
            format!("::{}", c.type_sql)
        } else {
            String::new()
        };
        conds.push(format!(
            "{}::text IS NOT DISTINCT FROM ${}{cast}::text",
            quote_ident(&c.name),
            params.len()
        ));
    }
    sql.push_str(&format!(
        " WHERE ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)",
        m.destination.quoted(),
        conds.join(" AND ")
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_quote_everything() {
        let cells = [Cell::text("b\"c\\d"), Cell::Null, Cell::text("")];
        assert_eq!(&array_of_cells(cells.iter())[..], br#"{"b\"c\\d",NULL,""}"#);
    }

    #[test]
    fn values_updates_list_each_row_with_typed_parameters() {
        use crate::model::{Column, ReplicaIdentity, TableSchema};
        use std::sync::Arc;
        let column = |name: &str, ty: &str, key: bool| Column {
            name: name.into(),
            type_oid: 0,
            type_modifier: -1,
            type_sql: ty.into(),
            not_null: key,
            is_key: key,
        };
        let schema = TableSchema {
            oid: 1,
            name: crate::model::TableName::new("public", "t"),
            columns: vec![
                column("id", "bigint", true),
                column("tags", "integer[]", false),
            ],
            identity: ReplicaIdentity::Default,
            has_primary_key: true,
        };
        let m = TableMapping::identity(Arc::new(schema), "d");
        let bin = |v: &'static [u8]| Cell::Binary(Bytes::from_static(v));
        let rows = vec![vec![bin(&[1]), bin(&[2])], vec![bin(&[3]), Cell::Null]];
        let shape = update_shape(&m, &rows[0]);
        assert!(
            update_many(&m, &shape, &rows).is_none(),
            "binary arrays of arrays"
        );
        let built = update_values(&m, &shape, &rows);
        assert_eq!(
            built.sql,
            "UPDATE \"d\".\"t\" AS t SET \"tags\" = v.a1 FROM (VALUES ($1::bigint, $2::integer[]), \
             ($3::bigint, $4::integer[])) AS v(a0, a1) WHERE t.\"id\" = v.a0"
        );
        assert_eq!(built.params.len(), 4);
        assert!(matches!(built.params[3], Param::Null));
        assert_eq!(values_rows_max(&m, &shape), 64);
    }
}
