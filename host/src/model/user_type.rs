//! User-defined types (enums, domains) that tables use and the destination must create first.

/// A user-defined type that must exist on the destination before the tables that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserType {
    /// `CREATE TYPE name AS ENUM (labels)`.
    Enum {
        /// Type name (created in the destination schema).
        name: String,
        /// Labels in sort order.
        labels: Vec<String>,
    },
    /// `CREATE DOMAIN name AS base [NOT NULL] [CHECK ...]`.
    Domain {
        /// Type name (created in the destination schema).
        name: String,
        /// The base type's SQL.
        base_sql: String,
        /// Whether the domain is NOT NULL.
        not_null: bool,
        /// The CHECK constraints, as `pg_get_constraintdef` prints them.
        checks: Vec<String>,
    },
}

impl UserType {
    /// The type name.
    pub fn name(&self) -> &str {
        match self {
            UserType::Enum { name, .. } | UserType::Domain { name, .. } => name,
        }
    }
}
