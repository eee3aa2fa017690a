//! Drives a [`Plugin`]: keeps its per-table state, decodes batches, and converts between the SDK's
//! types and the generated WIT bindings. Used by [`crate::export!`] and by the native test helper.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;

use crate::bindings::pgmorph::plugin::types as wit;
use crate::{
    codec, Column, ColumnSource, Config, Error, Mapping, Plugin, Table, TableSchema, TypeClass,
};

/// A plugin and the tables it has mapped.
pub struct Runtime<P> {
    plugin: P,
    tables: HashMap<u32, Table>,
}

impl<P: Plugin> Runtime<P> {
    /// Builds the plugin from its config.
    pub fn new(config: Config) -> Result<Self, Error> {
        Ok(Self {
            plugin: P::init(config)?,
            tables: HashMap::new(),
        })
    }

    /// Runs the mapping hook and remembers the table for the row hook.
    pub fn map_table(&mut self, id: u32, schema: TableSchema) -> Result<Mapping, Error> {
        let mapping = self.plugin.map_table(&schema)?;
        if let Some(rows) = &mapping.rows {
            for r in rows {
                if !mapping.columns.iter().any(|c| &c.name == r) {
                    return Err(Error::failed(format!(
                        "mapping of {} asks for rows with column {r:?}, which it does not output",
                        schema.qualified_name()
                    )));
                }
            }
        }
        self.tables.insert(id, Table::new(schema, mapping.clone()));
        Ok(mapping)
    }

    /// Runs the row hook over an encoded batch and returns the encoded verdicts.
    pub fn transform_rows(&mut self, id: u32, batch: &[u8]) -> Result<Vec<u8>, Error> {
        let table = self
            .tables
            .get(&id)
            .ok_or_else(|| Error::failed(format!("row batch for unknown table id {id}")))?;
        let mut changes = codec::decode_batch(&table.row_columns, batch)?;
        let mut out = Vec::with_capacity(changes.len() + 16);
        for change in &mut changes {
            let verdict = self.plugin.transform_row(table, change);
            codec::encode_verdict(&mut out, change, verdict);
        }
        Ok(out)
    }
}

thread_local! {
    static RUNTIME: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_runtime<P: Plugin, T>(
    f: impl FnOnce(&mut Runtime<P>) -> Result<T, Error>,
) -> Result<T, wit::PluginError> {
    RUNTIME.with(|cell| {
        let mut guard = cell.borrow_mut();
        let runtime = guard
            .as_mut()
            .and_then(|b| b.downcast_mut::<Runtime<P>>())
            .ok_or_else(|| wit::PluginError::Failed("plugin called before init".into()))?;
        f(runtime).map_err(to_wit_error)
    })
}

fn to_wit_error(e: Error) -> wit::PluginError {
    match e {
        Error::InvalidConfig(m) => wit::PluginError::InvalidConfig(m),
        Error::Unsupported(m) => wit::PluginError::Unsupported(m),
        Error::Failed(m) => wit::PluginError::Failed(m),
    }
}

/// `init` export.
pub fn guest_init<P: Plugin>(config: String) -> Result<(), wit::PluginError> {
    crate::panic_line::install();
    let runtime = Config::from_json(&config)
        .and_then(Runtime::<P>::new)
        .map_err(to_wit_error)?;
    RUNTIME.with(|cell| *cell.borrow_mut() = Some(Box::new(runtime)));
    Ok(())
}

/// `map-table` export.
pub fn guest_map_table<P: Plugin>(
    table: u32,
    schema: wit::TableSchema,
) -> Result<wit::TableMapping, wit::PluginError> {
    let schema = schema_from_wit(schema);
    with_runtime::<P, _>(|rt| rt.map_table(table, schema)).map(mapping_to_wit)
}

/// `transform-rows` export.
pub fn guest_transform_rows<P: Plugin>(
    table: u32,
    batch: Vec<u8>,
) -> Result<Vec<u8>, wit::PluginError> {
    with_runtime::<P, _>(|rt| rt.transform_rows(table, &batch))
}

fn class_from_wit(c: wit::TypeClass) -> TypeClass {
    match c {
        wit::TypeClass::Boolean => TypeClass::Boolean,
        wit::TypeClass::Integer => TypeClass::Integer,
        wit::TypeClass::Float => TypeClass::Float,
        wit::TypeClass::Numeric => TypeClass::Numeric,
        wit::TypeClass::Text => TypeClass::Text,
        wit::TypeClass::Bytes => TypeClass::Bytes,
        wit::TypeClass::Date => TypeClass::Date,
        wit::TypeClass::Time => TypeClass::Time,
        wit::TypeClass::Timestamp => TypeClass::Timestamp,
        wit::TypeClass::Timestamptz => TypeClass::Timestamptz,
        wit::TypeClass::Interval => TypeClass::Interval,
        wit::TypeClass::Uuid => TypeClass::Uuid,
        wit::TypeClass::Json => TypeClass::Json,
        wit::TypeClass::Array => TypeClass::Array,
        wit::TypeClass::Other => TypeClass::Other,
    }
}

fn schema_from_wit(s: wit::TableSchema) -> TableSchema {
    TableSchema {
        schema: s.schema,
        name: s.name,
        columns: s
            .columns
            .into_iter()
            .map(|c| Column {
                name: c.name,
                type_sql: c.type_sql,
                type_class: class_from_wit(c.type_class),
                element_class: c.element_class.map(class_from_wit),
                not_null: c.not_null,
                is_key: c.is_key,
            })
            .collect(),
    }
}

fn mapping_to_wit(m: Mapping) -> wit::TableMapping {
    if m.skip {
        return wit::TableMapping::Skip;
    }
    wit::TableMapping::Keep(wit::TableOutput {
        schema: m.schema,
        name: m.name,
        columns: m
            .columns
            .into_iter()
            .map(|c| wit::MappedColumn {
                name: c.name,
                type_sql: c.type_sql,
                source: match c.source {
                    ColumnSource::Input(i) => wit::ColumnSource::Input(i as u32),
                    ColumnSource::Computed => wit::ColumnSource::Computed,
                },
                not_null: c.not_null,
                is_key: c.is_key,
            })
            .collect(),
        rows: match m.rows {
            None => wit::RowInterest::None,
            Some(cols) => wit::RowInterest::Columns(cols),
        },
    })
}
