//! Secondary indexes of a source table, as the destination re-creates them.

/// What one index column indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexTarget {
    /// A plain column, by its source name.
    Column(String),
    /// An expression, as `pg_get_indexdef` prints it.
    Expression(String),
}

/// One column of an index, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexColumn {
    /// The column or expression.
    pub target: IndexTarget,
    /// A non-default operator class, schema-qualified and quoted.
    pub opclass: Option<String>,
    /// A collation other than the column's, schema-qualified and quoted.
    pub collation: Option<String>,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST`.
    pub nulls_first: bool,
}

impl IndexColumn {
    /// A plain ascending column with default options.
    pub fn plain(name: &str) -> Self {
        Self {
            target: IndexTarget::Column(name.into()),
            opclass: None,
            collation: None,
            descending: false,
            nulls_first: false,
        }
    }
}

/// A secondary (non primary key) index of a source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIndex {
    /// The index name on the source.
    pub name: String,
    /// `UNIQUE`.
    pub unique: bool,
    /// `NULLS NOT DISTINCT` (PostgreSQL 15+).
    pub nulls_not_distinct: bool,
    /// The access method (`btree`, `hash`, `gin`, `gist`, ...).
    pub method: String,
    /// Key columns in order.
    pub keys: Vec<IndexColumn>,
    /// `INCLUDE` columns, by source name.
    pub include: Vec<String>,
    /// The `WHERE` predicate, as `pg_get_expr` prints it.
    pub predicate: Option<String>,
    /// Source columns named by the expressions and the predicate.
    pub referenced: Vec<String>,
    /// Storage parameters (`fillfactor=70, ...`), when set.
    pub with: Option<String>,
}
