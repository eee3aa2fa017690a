//! The relation cache: source relation id -> the table's current mapping.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;

use crate::model::UserType;
use crate::model::{Column, ReplicaIdentity, TableMapping, TableName, TableSchema};
use crate::source::catalog::{self, CatalogError};
use crate::source::pgoutput::Relation;
use crate::transform::{Transform, TransformError};

/// A relation could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum RelationError {
    /// Resolving a new column's type failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The transform refused the table.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// A change arrived for a relation never described.
    #[error("change for unknown relation id {0} (no Relation message seen)")]
    Unknown(u32),
}

/// What a Relation message did to the cache.
pub enum RelationUpdate {
    /// Same shape as before: nothing to do.
    Unchanged,
    /// A new or changed mapping; `new_types` are user types the destination may lack.
    Changed {
        /// The new mapping.
        mapping: Arc<TableMapping>,
        /// User types referenced by new columns.
        new_types: Vec<UserType>,
    },
}

/// A mapping before and after a plugin reload.
pub type Remapped = (Arc<TableMapping>, Arc<TableMapping>);

/// Mappings by relation id, one per relation version.
pub struct Relations {
    by_oid: HashMap<u32, Arc<TableMapping>>,
    dest_schema: String,
}

impl Relations {
    /// An empty cache mapping into `dest_schema`.
    pub fn new(dest_schema: &str) -> Self {
        Self {
            by_oid: HashMap::new(),
            dest_schema: dest_schema.to_string(),
        }
    }

    /// The default destination schema.
    pub fn dest_schema(&self) -> &str {
        &self.dest_schema
    }

    /// Seeds the cache with mappings computed at start.
    pub fn insert(&mut self, mapping: Arc<TableMapping>) {
        self.by_oid.insert(mapping.source.oid, mapping);
    }

    /// The current mapping of a relation.
    pub fn get(&self, oid: u32) -> Result<&Arc<TableMapping>, RelationError> {
        self.by_oid.get(&oid).ok_or(RelationError::Unknown(oid))
    }

    /// Every mapping.
    pub fn all(&self) -> impl Iterator<Item = &Arc<TableMapping>> {
        self.by_oid.values()
    }

    /// Maps every known relation again with `transform` (after a plugin reload); returns the
    /// mappings that changed, old and new.
    pub fn remap(&mut self, transform: &mut dyn Transform) -> Result<Vec<Remapped>, RelationError> {
        let mut changed = Vec::new();
        let mut oids: Vec<u32> = self.by_oid.keys().copied().collect();
        oids.sort();
        for oid in oids {
            let old = self.by_oid[&oid].clone();
            let new = transform.map_table(old.source.clone(), &self.dest_schema)?;
            if new != *old {
                let new = Arc::new(new);
                self.by_oid.insert(oid, new.clone());
                changed.push((old, new));
            } else {
                // Same mapping, but batches must not mix rows of the two chains.
                self.by_oid.insert(oid, Arc::new(new));
            }
        }
        Ok(changed)
    }

    /// Whether `rel` describes a known relation with the shape it is mapped with.
    pub fn is_unchanged(&self, rel: &Relation) -> bool {
        self.by_oid.get(&rel.oid).is_some_and(|m| {
            let p = &m.source;
            p.name.schema == rel.schema
                && p.name.name == rel.name
                && p.columns.len() == rel.columns.len()
                && p.columns.iter().zip(&rel.columns).all(|(a, b)| {
                    a.name == b.name
                        && a.type_oid == b.type_oid
                        && a.type_modifier == b.type_modifier
                })
        })
    }

    /// Handles a Relation message: keeps the mapping when the shape is unchanged, otherwise
    /// builds the new schema (resolving new column types on the source) and maps it again.
    pub async fn on_relation(
        &mut self,
        rel: Relation,
        source: &Client,
        transform: &mut dyn Transform,
    ) -> Result<RelationUpdate, RelationError> {
        if self.is_unchanged(&rel) {
            return Ok(RelationUpdate::Unchanged);
        }
        let previous = self.by_oid.get(&rel.oid).map(|m| m.source.clone());
        let mut types = std::collections::BTreeMap::new();
        let full = rel.identity == ReplicaIdentity::Full;
        let mut columns = Vec::with_capacity(rel.columns.len());
        for rc in &rel.columns {
            let known = previous.as_ref().and_then(|p| {
                p.columns.iter().find(|c| {
                    c.name == rc.name
                        && c.type_oid == rc.type_oid
                        && c.type_modifier == rc.type_modifier
                })
            });
            let column = match known {
                Some(c) => c.clone(),
                None => {
                    let type_sql = catalog::resolve_type(
                        source,
                        rc.type_oid,
                        rc.type_modifier,
                        &self.dest_schema,
                        &mut types,
                    )
                    .await?;
                    Column {
                        name: rc.name.clone(),
                        type_oid: rc.type_oid,
                        type_modifier: rc.type_modifier,
                        type_sql,
                        not_null: false,
                        // Under FULL every column is flagged; the destination key stays as known.
                        is_key: rc.is_key && !full,
                    }
                }
            };
            columns.push(column);
        }
        let schema = TableSchema {
            oid: rel.oid,
            name: TableName::new(rel.schema, rel.name),
            columns,
            identity: rel.identity,
            has_primary_key: previous.as_ref().is_some_and(|p| p.has_primary_key),
        };
        let mapping = Arc::new(transform.map_table(Arc::new(schema), &self.dest_schema)?);
        self.by_oid.insert(rel.oid, mapping.clone());
        Ok(RelationUpdate::Changed {
            mapping,
            new_types: types.into_values().collect(),
        })
    }
}
