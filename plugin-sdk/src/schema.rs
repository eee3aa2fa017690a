//! Table schemas a plugin receives and the mappings it returns.

use crate::Error;

/// How a column's values are shaped (shared with the host through the wire format crate).
pub use pgmorph_wire::TypeClass;

/// One column of a table as a plugin receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// SQL type, e.g. `numeric(12,2)`.
    pub type_sql: String,
    /// Value shape.
    pub type_class: TypeClass,
    /// Element shape for arrays.
    pub element_class: Option<TypeClass>,
    /// NOT NULL.
    pub not_null: bool,
    /// Part of the row's identity.
    pub is_key: bool,
}

impl Column {
    /// A column of the given SQL type (class derived from it), nullable, not a key.
    pub fn new(name: &str, type_sql: &str) -> Self {
        let (type_class, element_class) = TypeClass::of_sql(type_sql);
        Self {
            name: name.to_string(),
            type_sql: type_sql.to_string(),
            type_class,
            element_class,
            not_null: false,
            is_key: false,
        }
    }

    /// Marks the column as a NOT NULL key column.
    pub fn key(mut self) -> Self {
        self.is_key = true;
        self.not_null = true;
        self
    }
}

/// A table as a plugin receives it: the source table after the earlier plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<Column>,
}

impl TableSchema {
    /// Builds a schema.
    pub fn new(schema: &str, name: &str, columns: Vec<Column>) -> Self {
        Self {
            schema: schema.to_string(),
            name: name.to_string(),
            columns,
        }
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// `schema.name`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// Where an output column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnSource {
    /// The input column at this index.
    Input(usize),
    /// Computed by the row hook (must be listed in [`Mapping::want_rows`]).
    Computed,
}

/// One output column of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedColumn {
    /// Output name.
    pub name: String,
    /// Output SQL type. When it differs from the input type and the row hook does not convert
    /// the value, the destination casts the text form.
    pub type_sql: String,
    /// Where the value comes from.
    pub source: ColumnSource,
    /// NOT NULL on the destination.
    pub not_null: bool,
    /// Part of the destination key.
    pub is_key: bool,
}

/// Where a table lands: built from the input schema, then reshaped with the builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Whether the table is not replicated at all.
    pub skip: bool,
    /// Destination schema.
    pub schema: String,
    /// Destination table name.
    pub name: String,
    /// Destination columns in order.
    pub columns: Vec<MappedColumn>,
    /// The output columns the row hook reads or writes; `None`: the row hook is not called.
    pub rows: Option<Vec<String>>,
    /// Columns renamed so far, `(from, to)`, to say so when a method is given an old name.
    renamed: Vec<(String, String)>,
}

impl Mapping {
    /// The pass-through mapping: same names, same columns, no rows.
    pub fn from_schema(table: &TableSchema) -> Self {
        Self {
            skip: false,
            schema: table.schema.clone(),
            name: table.name.clone(),
            columns: table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| MappedColumn {
                    name: c.name.clone(),
                    type_sql: c.type_sql.clone(),
                    source: ColumnSource::Input(i),
                    not_null: c.not_null,
                    is_key: c.is_key,
                })
                .collect(),
            rows: None,
            renamed: Vec::new(),
        }
    }

    /// A mapping that drops the whole table.
    pub fn skip_table() -> Self {
        Self {
            skip: true,
            schema: String::new(),
            name: String::new(),
            columns: Vec::new(),
            rows: None,
            renamed: Vec::new(),
        }
    }

    fn index(&self, column: &str) -> Result<usize, Error> {
        self.columns
            .iter()
            .position(|c| c.name == column)
            .ok_or_else(|| {
                let renamed = self.renamed_to(column).map_or(String::new(), |to| {
                    format!(" (it was renamed to {to:?}: mapping methods take output names)")
                });
                Error::unsupported(format!(
                    "table {}.{} has no column {column:?}{renamed}",
                    self.schema, self.name
                ))
            })
    }

    /// What `column` is called now, if it was renamed (following renames of renames).
    fn renamed_to(&self, column: &str) -> Option<&str> {
        let mut name = column;
        let mut found = None;
        for (from, to) in &self.renamed {
            if from == name {
                name = to;
                found = Some(to.as_str());
            }
        }
        found
    }

    /// The output column with this name.
    pub fn column_mut(&mut self, column: &str) -> Result<&mut MappedColumn, Error> {
        let i = self.index(column)?;
        Ok(&mut self.columns[i])
    }

    /// Moves the table to another schema and/or name.
    pub fn rename_table(&mut self, schema: &str, name: &str) -> &mut Self {
        self.schema = schema.to_string();
        self.name = name.to_string();
        self
    }

    /// Renames a column: `from` is its current (output) name.
    pub fn rename_column(&mut self, from: &str, to: &str) -> Result<&mut Self, Error> {
        self.column_mut(from)?.name = to.to_string();
        self.renamed.push((from.to_string(), to.to_string()));
        if let Some(rows) = &mut self.rows {
            for r in rows.iter_mut().filter(|r| *r == from) {
                *r = to.to_string();
            }
        }
        Ok(self)
    }

    /// Changes a column's SQL type (the destination casts the text value unless the row hook
    /// converts it).
    pub fn set_type(&mut self, column: &str, type_sql: &str) -> Result<&mut Self, Error> {
        self.column_mut(column)?.type_sql = type_sql.to_string();
        Ok(self)
    }

    /// Drops a column. Key columns cannot be dropped (updates and deletes need them).
    pub fn drop_column(&mut self, column: &str) -> Result<&mut Self, Error> {
        let i = self.index(column)?;
        if self.columns[i].is_key {
            return Err(Error::unsupported(format!(
                "column {column:?} of {}.{} is a key column and cannot be dropped",
                self.schema, self.name
            )));
        }
        self.columns.remove(i);
        if let Some(rows) = &mut self.rows {
            rows.retain(|r| r != column);
        }
        Ok(self)
    }

    /// Adds a computed column, filled by the row hook (also added to the row columns).
    pub fn add_column(&mut self, column: &str, type_sql: &str) -> Result<&mut Self, Error> {
        if self.index(column).is_ok() {
            return Err(Error::unsupported(format!(
                "table {}.{} already has a column {column:?}",
                self.schema, self.name
            )));
        }
        self.columns.push(MappedColumn {
            name: column.to_string(),
            type_sql: type_sql.to_string(),
            source: ColumnSource::Computed,
            not_null: false,
            is_key: false,
        });
        self.want_rows([column])?;
        Ok(self)
    }

    /// Asks for the row hook with these output columns (added to any asked for before).
    pub fn want_rows<'a>(
        &mut self,
        columns: impl IntoIterator<Item = &'a str>,
    ) -> Result<&mut Self, Error> {
        let mut wanted = self.rows.take().unwrap_or_default();
        for c in columns {
            self.index(c)?;
            if !wanted.iter().any(|w| w == c) {
                wanted.push(c.to_string());
            }
        }
        self.rows = Some(wanted);
        Ok(self)
    }

    /// Asks for the row hook with every output column.
    pub fn want_all_rows(&mut self) -> &mut Self {
        self.rows = Some(self.columns.iter().map(|c| c.name.clone()).collect());
        self
    }
}

/// A mapped table, as the row hook sees it.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table as the plugin received it.
    pub input: TableSchema,
    /// The mapping the plugin returned.
    pub output: Mapping,
    /// The columns present in each row, in order, with their output types.
    pub row_columns: Vec<Column>,
    /// `schema.name` of the input, computed once.
    qualified: String,
}

impl Table {
    /// Builds the row view of a mapping.
    pub(crate) fn new(input: TableSchema, output: Mapping) -> Self {
        let row_columns = output
            .rows
            .iter()
            .flatten()
            .filter_map(|name| output.columns.iter().find(|c| &c.name == name))
            .map(|c| {
                let mut col = Column::new(&c.name, &c.type_sql);
                col.not_null = c.not_null;
                col.is_key = c.is_key;
                col
            })
            .collect();
        Self {
            qualified: input.qualified_name(),
            input,
            output,
            row_columns,
        }
    }

    /// The input table's `schema.name`, without building it again: the row hook runs once per
    /// row, so per-table state is best looked up by this.
    pub fn qualified_name(&self) -> &str {
        &self.qualified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_mappings() {
        let t = TableSchema::new(
            "public",
            "orders",
            vec![
                Column::new("id", "bigint").key(),
                Column::new("email", "text"),
            ],
        );
        let mut m = Mapping::from_schema(&t);
        m.rename_table("sales", "orders_v2");
        m.want_rows(["email"]).unwrap();
        m.rename_column("email", "mail").unwrap();
        assert_eq!(m.rows.as_deref(), Some(&["mail".to_string()][..]));
        assert!(m.drop_column("id").is_err());
        m.add_column("n", "int").unwrap();
        assert_eq!(m.columns[2].source, ColumnSource::Computed);
        assert_eq!(m.rows.as_ref().unwrap().len(), 2);
    }
}

#[cfg(test)]
mod rename_tests {
    use super::*;

    #[test]
    fn a_column_asked_for_by_its_old_name_names_its_new_one() {
        let table = TableSchema::new(
            "public",
            "orders",
            vec![
                Column::new("id", "int").key(),
                Column::new("cust_id", "int"),
            ],
        );
        let mut m = Mapping::from_schema(&table);
        m.rename_column("cust_id", "customer").unwrap();
        m.rename_column("customer", "client").unwrap();
        let err = m.set_type("cust_id", "bigint").unwrap_err().to_string();
        assert!(
            err.contains("has no column \"cust_id\" (it was renamed to \"client\""),
            "{err}"
        );
        let err = m.set_type("nope", "bigint").unwrap_err().to_string();
        assert!(!err.contains("renamed"), "{err}");
    }
}
