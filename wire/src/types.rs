//! The type classes of SQL column types (the WIT `type-class` enum).

/// How a column's values are shaped; every value crosses in PostgreSQL's text output form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeClass {
    /// `boolean`: `t` / `f`.
    Boolean,
    /// `smallint`, `integer`, `bigint`, `oid`.
    Integer,
    /// `real`, `double precision`.
    Float,
    /// `numeric`, `money`: exact decimal text.
    Numeric,
    /// `text`, `varchar`, `char`, `name`, `citext`.
    Text,
    /// `bytea` (`\x` hex).
    Bytes,
    /// `date`.
    Date,
    /// `time`, `timetz`.
    Time,
    /// `timestamp` without time zone.
    Timestamp,
    /// `timestamptz` (UTC, suffixed `+00`).
    Timestamptz,
    /// `interval`.
    Interval,
    /// `uuid`.
    Uuid,
    /// `json`, `jsonb`.
    Json,
    /// An array literal (`{1,2,NULL}`).
    Array,
    /// Anything else: opaque text.
    Other,
}

impl TypeClass {
    /// Every class, in the order of the WIT `type-class` enum.
    pub const ALL: [TypeClass; 15] = [
        TypeClass::Boolean,
        TypeClass::Integer,
        TypeClass::Float,
        TypeClass::Numeric,
        TypeClass::Text,
        TypeClass::Bytes,
        TypeClass::Date,
        TypeClass::Time,
        TypeClass::Timestamp,
        TypeClass::Timestamptz,
        TypeClass::Interval,
        TypeClass::Uuid,
        TypeClass::Json,
        TypeClass::Array,
        TypeClass::Other,
    ];

    /// The class's position in [`TypeClass::ALL`] (and in the WIT enum).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class of an SQL type name such as `numeric(12,2)`, `timestamp with time zone` or
    /// `text[]`, with the element class for arrays.
    pub fn of_sql(type_sql: &str) -> (TypeClass, Option<TypeClass>) {
        let t = type_sql.trim();
        if let Some(element) = t.strip_suffix("[]") {
            return (TypeClass::Array, Some(Self::of_sql(element).0));
        }
        // Lower-case, without type modifiers, quotes or repeated white space.
        let mut base = String::with_capacity(t.len());
        let mut depth = 0;
        for ch in t.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                '"' => {}
                _ if depth == 0 => base.push(ch.to_ascii_lowercase()),
                _ => {}
            }
        }
        let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
        let base = base.strip_prefix("pg_catalog.").unwrap_or(&base);
        let class = match base {
            "boolean" | "bool" => TypeClass::Boolean,
            "smallint" | "integer" | "int" | "bigint" | "int2" | "int4" | "int8" | "oid"
            | "smallserial" | "serial" | "bigserial" => TypeClass::Integer,
            "real" | "double precision" | "float4" | "float8" | "float" => TypeClass::Float,
            "numeric" | "decimal" | "money" => TypeClass::Numeric,
            "text" | "varchar" | "character varying" | "character" | "char" | "bpchar" | "name"
            | "citext" => TypeClass::Text,
            "bytea" => TypeClass::Bytes,
            "date" => TypeClass::Date,
            "time" | "time without time zone" | "time with time zone" | "timetz" => TypeClass::Time,
            "timestamp" | "timestamp without time zone" => TypeClass::Timestamp,
            "timestamptz" | "timestamp with time zone" => TypeClass::Timestamptz,
            "interval" => TypeClass::Interval,
            "uuid" => TypeClass::Uuid,
            "json" | "jsonb" => TypeClass::Json,
            _ => TypeClass::Other,
        };
        (class, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sql_types() {
        assert_eq!(TypeClass::of_sql("numeric(12,2)").0, TypeClass::Numeric);
        assert_eq!(
            TypeClass::of_sql("timestamp(3) with time zone").0,
            TypeClass::Timestamptz
        );
        assert_eq!(
            TypeClass::of_sql("integer[]"),
            (TypeClass::Array, Some(TypeClass::Integer))
        );
        assert_eq!(TypeClass::of_sql("\"sales\".\"mood\"").0, TypeClass::Other);
        assert_eq!(TypeClass::of_sql("pg_catalog.int8").0, TypeClass::Integer);
        assert_eq!(
            TypeClass::of_sql("  Character   Varying(20) "),
            (TypeClass::Text, None)
        );
    }

    #[test]
    fn all_is_in_index_order() {
        for (i, c) in TypeClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
