//! `mask`: replace PII columns with a salted hash or a redaction, keeping keys stable.

use std::collections::BTreeMap;

use pgmorph_plugin_sdk::{
    export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, TypeClass, Verdict,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

fn default_redaction() -> String {
    "REDACTED".to_string()
}

/// `[plugins.<name>.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `salt = "..."`: mixed into every hash.
    #[serde(default)]
    salt: String,
    /// `hash = ["public.users.email", "*.phone"]`.
    #[serde(default)]
    hash: Vec<String>,
    /// `redact = ["public.users.ssn"]`.
    #[serde(default)]
    redact: Vec<String>,
    /// `redaction = "REDACTED"`.
    #[serde(default = "default_redaction")]
    redaction: String,
}

#[derive(Debug, Clone, Copy)]
enum How {
    Hash,
    Redact,
}

/// The plugin.
pub struct Mask {
    settings: Settings,
    /// The hash state after the salt and its separator, cloned for each value.
    salted: Sha256,
    /// Per input table: the masked columns.
    columns: BTreeMap<String, Vec<(String, How)>>,
}

fn matches(pattern: &str, table: &str, column: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(c) => c == column,
        None => pattern == format!("{table}.{column}"),
    }
}

impl Mask {
    fn hash(&self, value: &str) -> String {
        let mut h = self.salted.clone();
        h.update(value.as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in h.finalize() {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
        out
    }
}

impl Plugin for Mask {
    fn init(config: Config) -> Result<Self, Error> {
        let settings: Settings = match config.value() {
            serde_json::Value::Null => return Err(Error::config("mask needs a config")),
            _ => config.parse()?,
        };
        let mut salted = Sha256::new();
        salted.update(settings.salt.as_bytes());
        salted.update([0u8]);
        Ok(Self {
            settings,
            salted,
            columns: BTreeMap::new(),
        })
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let qualified = table.qualified_name();
        let mut mapping = Mapping::from_schema(table);
        let mut masked = Vec::new();
        for column in &table.columns {
            let hit = |list: &[String]| list.iter().any(|p| matches(p, &qualified, &column.name));
            let how = if hit(&self.settings.hash) {
                How::Hash
            } else if hit(&self.settings.redact) {
                if column.is_key {
                    return Err(Error::config(format!(
                        "key column {qualified}.{} cannot be redacted (rows would collide); hash it",
                        column.name
                    )));
                }
                How::Redact
            } else {
                continue;
            };
            if !matches!(column.type_class, TypeClass::Text | TypeClass::Other) {
                mapping.set_type(&column.name, "text")?;
            }
            masked.push((column.name.clone(), how));
        }
        if !masked.is_empty() {
            mapping.want_rows(masked.iter().map(|(c, _)| c.as_str()))?;
        }
        self.columns.insert(qualified, masked);
        Ok(mapping)
    }

    fn transform_row(&mut self, table: &Table, change: &mut Change) -> Result<Verdict, Error> {
        let masked = &self.columns[table.qualified_name()];
        change.for_each_row(|row| {
            for (column, how) in masked {
                if row.is_unchanged(column)? {
                    continue;
                }
                let Some(value) = row.get_str(column)? else {
                    continue;
                };
                let replacement = match how {
                    How::Hash => self.hash(value),
                    How::Redact => self.settings.redaction.clone(),
                };
                row.set_str(column, &replacement)?;
            }
            Ok(())
        })?;
        Ok(Verdict::Keep)
    }
}

export!(Mask);

#[cfg(test)]
mod tests {
    use super::*;
    use pgmorph_plugin_sdk::testing::{row, Outcome, TestHost};
    use pgmorph_plugin_sdk::{Column, Op};

    #[test]
    fn hashes_keys_stably_and_redacts() {
        let mut host = TestHost::<Mask>::new(serde_json::json!({
            "salt": "s", "hash": ["*.email"], "redact": ["public.u.ssn"]
        }))
        .unwrap();
        let t = TableSchema::new(
            "public",
            "u",
            vec![
                Column::new("email", "text").key(),
                Column::new("ssn", "text"),
                Column::new("n", "int"),
            ],
        );
        let m = host.map_table(&t).unwrap();
        assert_eq!(m.rows.as_deref().unwrap(), ["email", "ssn"]);
        let ins = host
            .transform(
                &t,
                Op::Insert,
                None,
                Some(row(&[("email", "a@b"), ("ssn", "1")])),
            )
            .unwrap();
        let del = host
            .transform(&t, Op::Delete, Some(row(&[("email", "a@b")])), None)
            .unwrap();
        let (Outcome::Kept { new: Some(new), .. }, Outcome::Kept { old: Some(old), .. }) =
            (ins, del)
        else {
            panic!()
        };
        assert_eq!(new["email"], old["email"]);
        assert_eq!(new["email"].as_ref().unwrap().len(), 64);
        assert_eq!(new["ssn"].as_deref(), Some("REDACTED"));
    }
}
