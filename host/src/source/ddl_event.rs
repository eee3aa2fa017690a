//! Decoding the DDL messages of [`super::ddl_trigger`]: a table's catalog state before and after
//! one source DDL command, and the table schema that state describes.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokio_postgres::Client;

use super::catalog::{self, CatalogError};
use crate::model::{Column, ReplicaIdentity, TableName, TableSchema, UserType};

/// One DDL command on a replicated table, as the source's event trigger saw it.
#[derive(Debug, Clone, Deserialize)]
pub struct DdlEvent {
    /// The connector whose trigger emitted it.
    pub connector: String,
    /// The command tag (`ALTER TABLE`, `DROP TABLE`, ...).
    pub tag: String,
    /// The statement, as the client sent it.
    pub statement: String,
    /// The table's OID (pgoutput's relation id).
    pub oid: u32,
    /// The state before the command; absent for a table the trigger had not seen yet.
    pub old: Option<TableState>,
    /// The state after the command; absent when the table was dropped.
    pub new: Option<TableState>,
    /// For a dropped table: drop the destination table too (`setup-source --drop-tables`).
    #[serde(default)]
    pub drop_destination: bool,
}

/// A table's catalog state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TableState {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// `relreplident`.
    pub identity: String,
    /// Live columns (neither dropped nor generated), by attribute number.
    pub columns: Vec<StateColumn>,
    /// Whether the table has a primary key.
    pub primary_key: bool,
    /// Attribute numbers of the primary key, else of the replica identity index.
    pub key: Vec<i16>,
}

/// One column of a [`TableState`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StateColumn {
    /// Attribute number: stable across renames and type changes.
    pub attnum: i16,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier.
    pub typmod: i32,
    /// The type as `format_type` prints it.
    #[serde(rename = "type")]
    pub type_name: String,
    /// NOT NULL.
    pub not_null: bool,
    /// The default expression, if any.
    pub default: Option<String>,
    /// The value rows that existed before the column was added read (`attmissingval`): set
    /// when the column was added with a non-volatile default, without rewriting the table.
    #[serde(default)]
    pub missing: Option<String>,
}

/// A DDL message that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable DDL message from the source's event trigger: {0}")]
pub struct DdlEventError(#[from] serde_json::Error);

impl DdlEvent {
    /// Decodes a message's content.
    pub fn parse(content: &[u8]) -> Result<Self, DdlEventError> {
        Ok(serde_json::from_slice(content)?)
    }
}

impl TableState {
    /// The table's name.
    pub fn table_name(&self) -> TableName {
        TableName::new(&self.schema, &self.name)
    }

    /// The column with attribute number `attnum`, by index.
    pub fn index_of(&self, attnum: i16) -> Option<usize> {
        self.columns.iter().position(|c| c.attnum == attnum)
    }

    /// The table schema this state describes, as the catalog would (types resolved on the
    /// source for `dest_schema`; user types they need are added to `types`).
    pub async fn to_schema(
        &self,
        oid: u32,
        client: &Client,
        dest_schema: &str,
        types: &mut BTreeMap<String, UserType>,
    ) -> Result<TableSchema, CatalogError> {
        let identity =
            ReplicaIdentity::from_code(*self.identity.as_bytes().first().unwrap_or(&b'd'));
        let full = identity == ReplicaIdentity::Full;
        let mut columns = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let type_sql =
                catalog::resolve_type(client, c.type_oid, c.typmod, dest_schema, types).await?;
            columns.push(Column {
                name: c.name.clone(),
                type_oid: c.type_oid,
                type_modifier: c.typmod,
                type_sql,
                not_null: c.not_null,
                is_key: !full && self.key.contains(&c.attnum),
            });
        }
        Ok(TableSchema {
            oid,
            name: self.table_name(),
            columns,
            identity,
            has_primary_key: self.primary_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_trigger_message() {
        let json = br#"{"connector": "c", "tag": "ALTER TABLE", "statement": "ALTER TABLE t RENAME b TO c",
            "oid": 16384, "old": null,
            "new": {"schema": "public", "name": "t", "identity": "d", "primary_key": true, "key": [1],
                    "columns": [{"attnum": 1, "name": "id", "type_oid": 23, "typmod": -1,
                                 "type": "integer", "not_null": true, "default": null},
                                {"attnum": 3, "name": "c", "type_oid": 25, "typmod": -1,
                                 "type": "text", "not_null": false, "default": "'x'::text", "missing": "x"}]}}"#;
        let e = DdlEvent::parse(json).unwrap();
        assert_eq!((e.oid, e.tag.as_str()), (16384, "ALTER TABLE"));
        assert!(e.old.is_none());
        let new = e.new.unwrap();
        assert_eq!(new.index_of(3), Some(1));
        assert_eq!(new.index_of(2), None);
        assert_eq!(new.columns[1].default.as_deref(), Some("'x'::text"));
        assert_eq!(new.columns[1].missing.as_deref(), Some("x"));
        assert_eq!(new.columns[0].missing, None);
        assert!(DdlEvent::parse(b"{\"tag\": 1}").is_err());
    }
}
