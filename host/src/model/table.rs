//! Source table schemas as read from the catalog or from pgoutput Relation messages.

use std::fmt;

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The schema (namespace) name.
    pub schema: String,
    /// The table name inside the schema.
    pub name: String,
}

impl TableName {
    /// Builds a name from its two parts.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Parses `schema.table`; a bare `table` lands in `default_schema`. Either part may be
    /// double-quoted as in SQL (`"odd.schema"."a.b"`, `""` for a quote inside), so names
    /// with dots can be written.
    pub fn parse(text: &str, default_schema: &str) -> Self {
        let mut parts = identifiers(text);
        match (parts.len(), parts.pop()) {
            (2, Some(name)) => Self::new(parts.remove(0), name),
            (1, Some(name)) => Self::new(default_schema, name),
            _ => match text.split_once('.') {
                Some((schema, name)) => Self::new(schema, name),
                None => Self::new(default_schema, text),
            },
        }
    }

    /// Parses a schema-qualified `schema.table` (either part may be double-quoted, as in
    /// [`Self::parse`]); `None` unless it has exactly two non-empty parts.
    pub fn parse_qualified(text: &str) -> Option<Self> {
        match identifiers(text).as_slice() {
            [schema, name] if !schema.is_empty() && !name.is_empty() => {
                Some(Self::new(schema.clone(), name.clone()))
            }
            _ => None,
        }
    }

    /// The name quoted for SQL: `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Splits `a.b` into identifiers at dots outside double quotes, unquoting quoted ones.
fn identifiers(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                parts.last_mut().expect("one part").push('"');
            }
            ('"', _) => quoted = !quoted,
            ('.', false) => parts.push(String::new()),
            (c, _) => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

/// Quotes an SQL identifier, doubling embedded quotes.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes an SQL string literal, doubling embedded quotes.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// How the source identifies the old row of an UPDATE or DELETE (`REPLICA IDENTITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// The primary key.
    Default,
    /// No old row at all: UPDATE and DELETE cannot be replicated.
    Nothing,
    /// Every column.
    Full,
    /// A unique index chosen with `REPLICA IDENTITY USING INDEX`.
    Index,
}

impl ReplicaIdentity {
    /// Decodes `pg_class.relreplident` (also used by pgoutput Relation messages).
    pub fn from_code(code: u8) -> Self {
        match code {
            b'n' => Self::Nothing,
            b'f' => Self::Full,
            b'i' => Self::Index,
            _ => Self::Default,
        }
    }
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// The type's OID on the source.
    pub type_oid: u32,
    /// The type modifier (`atttypmod`), -1 when none.
    pub type_modifier: i32,
    /// The SQL type to create on the destination, e.g. `numeric(12,2)` or `"sales"."mood"[]`.
    pub type_sql: String,
    /// Whether the column is declared NOT NULL.
    pub not_null: bool,
    /// Whether the column is part of the replica identity (primary key or identity index).
    pub is_key: bool,
}

/// A source table: its name, columns in attribute order, and replica identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The table's OID on the source (pgoutput's relation id).
    pub oid: u32,
    /// Schema-qualified name on the source.
    pub name: TableName,
    /// Columns in attribute-number order, dropped and generated columns excluded.
    pub columns: Vec<Column>,
    /// How old rows are identified.
    pub identity: ReplicaIdentity,
    /// Whether the table has a primary key (the destination gets the same one).
    pub has_primary_key: bool,
}

impl TableSchema {
    /// Indexes of the key columns, in column order.
    pub fn key_indexes(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].is_key)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_quotes_names() {
        let t = TableName::parse("orders", "public");
        assert_eq!(t, TableName::new("public", "orders"));
        assert_eq!(
            TableName::new("we\"ird", "x").quoted(),
            "\"we\"\"ird\".\"x\""
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn only_two_non_empty_parts_are_schema_qualified() {
        let q = |s: &str| TableName::parse_qualified(s).map(|t| (t.schema, t.name));
        assert_eq!(q(r#"public."a.b""#), Some(("public".into(), "a.b".into())));
        assert_eq!(q("public.orders"), Some(("public".into(), "orders".into())));
        for bad in ["orders", "a.b.c", ".orders", "public.", r#""a.b""#, ""] {
            assert_eq!(q(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_quoted_names_with_dots() {
        let t = |text: &str| {
            let n = TableName::parse(text, "public");
            (n.schema, n.name)
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(t("shop.orders"), pair("shop", "orders"));
        assert_eq!(t(r#"public."a.b""#), pair("public", "a.b"));
        assert_eq!(t(r#""my.schema"."x""y""#), pair("my.schema", "x\"y"));
        assert_eq!(t(r#""v1.2""#), pair("public", "v1.2"));
    }
}
