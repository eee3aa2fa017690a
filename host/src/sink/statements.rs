//! The SQL the sink sends for row changes, with their text-format parameters.

use bytes::{BufMut, Bytes, BytesMut};

use super::params::TextParam;
use crate::model::{quote_ident, Cell, Row, TableMapping};

/// A statement and its parameters.
pub(crate) struct Built {
    /// SQL text (prepared once per distinct text).
    pub sql: String,
    /// Parameters in text form.
    pub params: Vec<TextParam>,
}

/// Why a change cannot become SQL.
pub(crate) type Unusable = String;

pub(crate) fn param(cell: &Cell) -> TextParam {
    match cell {
        Cell::Text(b) => TextParam::Text(b.clone()),
        _ => TextParam::Null,
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

/// `DELETE FROM t WHERE key = ANY($1::type[])` for many rows of a single-key table.
pub(crate) fn delete_many(m: &TableMapping, key: usize, olds: &[Row]) -> Result<Built, Unusable> {
    let c = &m.columns[key];
    let mut values = Vec::with_capacity(olds.len());
    for old in olds {
        match &old[key] {
            Cell::Text(b) => values.push(b.clone()),
            _ => return Err(format!("key column {} has no value", c.name)),
        }
    }
    Ok(Built {
        sql: format!(
            "DELETE FROM {} WHERE {} = ANY($1::text::{}[])",
            m.destination.quoted(),
            quote_ident(&c.name),
            c.type_sql.trim_end_matches("[]")
        ),
        params: vec![TextParam::Text(array_literal(&values))],
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

/// One `UPDATE t SET ... FROM unnest(...) v WHERE key` for many rows with the same shape and
/// distinct keys (whose keys did not change).
pub(crate) fn update_many(m: &TableMapping, shape: &[bool], rows: &[Row]) -> Built {
    let used: Vec<usize> = (0..m.columns.len())
        .filter(|&i| m.columns[i].is_key || shape[i])
        .collect();
    // Every column crosses as text[] and is cast per value, so array-typed columns work too.
    let arrays: Vec<String> = (1..=used.len()).map(|n| format!("${n}::text[]")).collect();
    let aliases: Vec<String> = (0..used.len()).map(|n| format!("a{n}")).collect();
    let mut sets = Vec::new();
    let mut conds = Vec::new();
    for (n, &i) in used.iter().enumerate() {
        let col = quote_ident(&m.columns[i].name);
        let ty = &m.columns[i].type_sql;
        if m.columns[i].is_key {
            conds.push(format!("t.{col} = v.a{n}::{ty}"));
        } else {
            sets.push(format!("{col} = v.a{n}::{ty}"));
        }
    }
    let params = used
        .iter()
        .map(|&i| TextParam::Text(array_of_cells(rows.iter().map(|r| &r[i]))))
        .collect();
    Built {
        sql: format!(
            "UPDATE {} AS t SET {} FROM unnest({}) AS v({}) WHERE {}",
            m.destination.quoted(),
            sets.join(", "),
            arrays.join(", "),
            aliases.join(", "),
            conds.join(" AND ")
        ),
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
            _ => out.put_slice(b"NULL"),
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

/// An array literal (`{"a","b\"c"}`) of text values.
pub(crate) fn array_literal(values: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(values.iter().map(|v| v.len() + 3).sum::<usize>() + 2);
    out.put_u8(b'{');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        quote_element(&mut out, v);
    }
    out.put_u8(b'}');
    out.freeze()
}

/// Appends the WHERE clause identifying `old`: key columns, or every sent column (compared as
/// text, one row only) when the table has no key.
fn where_clause(
    m: &TableMapping,
    old: &Row,
    sql: &mut String,
    params: &mut Vec<TextParam>,
) -> Result<(), Unusable> {
    let keys = m.key_indexes();
    if !keys.is_empty() {
        sql.push_str(" WHERE ");
        for (n, &i) in keys.iter().enumerate() {
            if n > 0 {
                sql.push_str(" AND ");
            }
            if !matches!(old[i], Cell::Text(_)) {
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
        conds.push(format!(
            "{}::text IS NOT DISTINCT FROM ${}::text",
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
        let v = [
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b\"c\\d"),
            Bytes::from_static(b""),
        ];
        assert_eq!(&array_literal(&v)[..], br#"{"a","b\"c\\d",""}"#);
        let cells = [Cell::text("x"), Cell::Null];
        assert_eq!(&array_of_cells(cells.iter())[..], br#"{"x",NULL}"#);
    }
}
