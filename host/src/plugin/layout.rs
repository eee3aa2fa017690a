//! Model <-> WIT conversion of table schemas, and the composition of the plugins' mappings into
//! one [`TableMapping`] plus, per row plugin, which destination columns it reads and writes.

use std::collections::HashSet;
use std::sync::Arc;

use pgmorph_wire::TypeClass;

use crate::model::{MappedColumn, TableMapping, TableName, TableSchema};

use super::bindings::wit;
use super::instance::PluginInstance;

/// The WIT type classes, in the order of [`TypeClass::ALL`].
const WIT_CLASSES: [wit::TypeClass; 15] = {
    use wit::TypeClass as C;
    [
        C::Boolean,
        C::Integer,
        C::Float,
        C::Numeric,
        C::Text,
        C::Bytes,
        C::Date,
        C::Time,
        C::Timestamp,
        C::Timestamptz,
        C::Interval,
        C::Uuid,
        C::Json,
        C::Array,
        C::Other,
    ]
};

/// The type class of an SQL type name (and the element class for arrays), as WIT spells it.
pub(crate) fn class_of(type_sql: &str) -> (wit::TypeClass, Option<wit::TypeClass>) {
    let wit = |c: TypeClass| WIT_CLASSES[c.index()];
    let (class, element) = TypeClass::of_sql(type_sql);
    (wit(class), element.map(wit))
}

/// The WIT view of a table in some intermediate layout.
pub(crate) fn to_wit(name: &TableName, columns: &[MappedColumn]) -> wit::TableSchema {
    wit::TableSchema {
        schema: name.schema.clone(),
        name: name.name.clone(),
        columns: columns
            .iter()
            .map(|c| {
                let (type_class, element_class) = class_of(&c.type_sql);
                wit::Column {
                    name: c.name.clone(),
                    type_sql: c.type_sql.clone(),
                    type_class,
                    element_class,
                    not_null: c.not_null,
                    is_key: c.is_key,
                }
            })
            .collect(),
    }
}

/// One column a row plugin reads or writes, as that plugin declared it.
#[derive(Debug, Clone)]
pub(crate) struct StepColumn {
    pub(crate) name: String,
    pub(crate) class: wit::TypeClass,
    pub(crate) not_null: bool,
    pub(crate) is_key: bool,
    /// Added by this plugin: the row hook must fill it.
    pub(crate) computed: bool,
}

/// How one row plugin sees the rows of one table.
#[derive(Debug, Clone)]
pub(crate) struct RowStep {
    /// Index of the plugin in the chain.
    pub(crate) plugin: usize,
    /// The table id the plugin knows this table by.
    pub(crate) table_id: u32,
    /// For each declared column, its index in the destination layout.
    pub(crate) positions: Vec<usize>,
    /// The declared columns with the types the plugin's own output gave them.
    pub(crate) columns: Vec<StepColumn>,
}

/// A table's mapping through the whole chain.
pub(crate) struct Composed {
    pub(crate) mapping: TableMapping,
    pub(crate) steps: Vec<RowStep>,
}

/// Runs every plugin's mapping hook in chain order and composes the answers.
///
/// The first plugin sees the source table's own schema and name; each next plugin sees the
/// previous plugin's output. A table that no plugin moved or renamed lands in `dest_schema`;
/// once a plugin moves or renames it, the schema it names is the destination schema, even
/// when it is the source's own (`public.orders -> public.orders_v2` lands in `public`).
pub(crate) fn compose(
    plugins: &mut [PluginInstance],
    ids: &[u32],
    source: Arc<TableSchema>,
    dest_schema: &str,
) -> Result<Composed, String> {
    let identity = TableMapping::identity(source.clone(), dest_schema);
    let mut columns = identity.columns.clone();
    let mut name = source.name.clone();
    let mut explicit = false;
    // Row steps with positions in the current layout (None: dropped by a later plugin).
    let mut steps: Vec<(RowStep, Vec<Option<usize>>)> = Vec::new();
    for (k, plugin) in plugins.iter_mut().enumerate() {
        let input = to_wit(&name, &columns);
        let out = plugin.map_table(ids[k], &input).map_err(|e| {
            format!(
                "plugin {} failed to map table {}: {e}",
                plugin.name, source.name
            )
        })?;
        let out = match out {
            wit::TableMapping::Skip => {
                tracing::info!(plugin = %plugin.name, table = %source.name, "plugin skips table");
                let mut mapping = identity;
                mapping.skip = true;
                return Ok(Composed {
                    mapping,
                    steps: Vec::new(),
                });
            }
            wit::TableMapping::Keep(out) => out,
        };
        let fail = |what: String| {
            format!(
                "plugin {} mapped table {} wrongly: {what}",
                plugin.name, source.name
            )
        };
        if out.schema.is_empty() || out.name.is_empty() {
            return Err(fail("empty destination schema or table name".into()));
        }
        let mut seen = HashSet::new();
        let mut next = Vec::with_capacity(out.columns.len());
        let mut old_to_new: Vec<Option<usize>> = vec![None; columns.len()];
        for (q, c) in out.columns.iter().enumerate() {
            if c.name.is_empty() || !seen.insert(c.name.as_str()) {
                return Err(fail(format!(
                    "column name {:?} is empty or repeated",
                    c.name
                )));
            }
            let column = match c.source {
                wit::ColumnSource::Input(i) => {
                    let i = i as usize;
                    let Some(prev) = columns.get(i) else {
                        return Err(fail(format!(
                            "column {:?} refers to input column {i}, which does not exist",
                            c.name
                        )));
                    };
                    old_to_new[i].get_or_insert(q);
                    let mut column = prev.clone();
                    if prev.name != c.name || prev.type_sql != c.type_sql {
                        column.changed_by.push(plugin.name.clone());
                    }
                    column.name = c.name.clone();
                    column.type_sql = c.type_sql.clone();
                    column.not_null = c.not_null;
                    column.is_key = c.is_key;
                    column
                }
                wit::ColumnSource::Computed => MappedColumn {
                    name: c.name.clone(),
                    type_sql: c.type_sql.clone(),
                    source_index: None,
                    not_null: c.not_null,
                    is_key: c.is_key,
                    changed_by: vec![plugin.name.clone()],
                },
            };
            next.push(column);
        }
        for (i, prev) in columns.iter().enumerate() {
            if prev.is_key && old_to_new[i].is_none() {
                return Err(fail(format!(
                    "it drops key column {:?}, which updates and deletes need",
                    prev.name
                )));
            }
        }
        for (_, positions) in &mut steps {
            for p in positions.iter_mut() {
                *p = p.and_then(|p| old_to_new[p]);
            }
        }
        if let wit::RowInterest::Columns(wanted) = &out.rows {
            let mut positions = Vec::with_capacity(wanted.len());
            let mut step_columns = Vec::with_capacity(wanted.len());
            for w in wanted {
                let Some(q) = out.columns.iter().position(|c| &c.name == w) else {
                    return Err(fail(format!(
                        "it asks for rows with column {w:?}, which it does not output"
                    )));
                };
                if positions.contains(&Some(q)) {
                    return Err(fail(format!("it asks for column {w:?} twice")));
                }
                positions.push(Some(q));
                step_columns.push(StepColumn {
                    name: w.clone(),
                    class: class_of(&out.columns[q].type_sql).0,
                    not_null: out.columns[q].not_null,
                    is_key: out.columns[q].is_key,
                    computed: matches!(out.columns[q].source, wit::ColumnSource::Computed),
                });
            }
            for c in &out.columns {
                if matches!(c.source, wit::ColumnSource::Computed) && !wanted.contains(&c.name) {
                    return Err(fail(format!(
                        "computed column {:?} is not among the row columns that fill it",
                        c.name
                    )));
                }
            }
            steps.push((
                RowStep {
                    plugin: k,
                    table_id: ids[k],
                    positions: Vec::new(),
                    columns: step_columns,
                },
                positions,
            ));
        } else if let Some(c) = out
            .columns
            .iter()
            .find(|c| matches!(c.source, wit::ColumnSource::Computed))
        {
            return Err(fail(format!(
                "computed column {:?} needs the row hook, but it asks for no rows",
                c.name
            )));
        }
        explicit |= names_target(&name, &out.schema, &out.name);
        name = TableName::new(out.schema, out.name);
        columns = next;
    }
    let mut row_steps = Vec::with_capacity(steps.len());
    for (mut step, positions) in steps {
        for (c, p) in step.columns.iter().zip(&positions) {
            match p {
                Some(p) => step.positions.push(*p),
                None => {
                    return Err(format!(
                        "plugin {} reads column {:?} of table {}, which a later plugin drops",
                        plugins[step.plugin].name, c.name, source.name
                    ))
                }
            }
        }
        row_steps.push(step);
    }
    let destination = if explicit {
        name
    } else {
        TableName::new(dest_schema, name.name)
    };
    Ok(Composed {
        mapping: TableMapping {
            source,
            destination,
            columns,
            skip: false,
            transforms_rows: !row_steps.is_empty(),
        },
        steps: row_steps,
    })
}

/// Whether a plugin's answer names the table's destination: it moved or renamed the table, so
/// the schema it returned is its choice, not the one it was shown. A table name changed only in
/// letter case (a casing strategy) is the same table spelled another way, not a choice.
fn names_target(input: &TableName, schema: &str, name: &str) -> bool {
    input.schema != schema || !input.name.eq_ignore_ascii_case(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_or_renamed_table_names_its_schema() {
        let input = TableName::new("public", "orders");
        assert!(!names_target(&input, "public", "orders"), "kept as shown");
        assert!(
            names_target(&input, "public", "orders_v2"),
            "renamed in place"
        );
        assert!(names_target(&input, "sales", "orders"), "moved");
        assert!(
            !names_target(&input, "public", "ORDERS"),
            "only the letter case changed"
        );
    }

    #[test]
    fn wit_classes_line_up_with_the_wire_classes() {
        for (class, wit) in TypeClass::ALL.iter().zip(WIT_CLASSES) {
            let (class, wit) = (format!("{class:?}"), format!("{wit:?}"));
            assert!(wit.ends_with(&class), "{wit} is not {class}");
        }
        assert_eq!(
            class_of("integer[]"),
            (wit::TypeClass::Array, Some(wit::TypeClass::Integer))
        );
    }
}
