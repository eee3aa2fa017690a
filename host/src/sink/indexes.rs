//! Secondary indexes of tables pgmorph created on the destination: rebuilt from the source's
//! indexes with the mapped column names, after the table's rows are copied.

use tokio_postgres::Client;

use crate::model::{quote_ident, MappedColumn, TableMapping};
use crate::model::{IndexColumn, IndexTarget, SourceIndex};

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`).
const MAX_IDENT: usize = 63;

/// A source index ready to be created on the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPlan {
    /// The source index's name, tried first on the destination.
    pub source_name: String,
    /// A name derived from the destination table and columns, used when the source name is
    /// taken in the destination schema.
    pub derived_name: String,
    /// What follows `ON <table>` in `CREATE INDEX`, or the constraint body of a deferrable
    /// unique constraint.
    body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `CREATE [UNIQUE] INDEX name ON table <text>`.
    Index { unique: bool, text: String },
    /// `ALTER TABLE table ADD CONSTRAINT name <text>`.
    Constraint(String),
}

impl IndexPlan {
    /// The statement creating the index as `name` on `table` (quoted, schema-qualified).
    pub fn sql(&self, table: &str, name: &str) -> String {
        let name = quote_ident(name);
        match &self.body {
            Body::Index { unique, text } => format!(
                "CREATE {}INDEX {name} ON {table} {text}",
                if *unique { "UNIQUE " } else { "" }
            ),
            Body::Constraint(text) => format!("ALTER TABLE {table} ADD CONSTRAINT {name} {text}"),
        }
    }
}

/// The destination column fed by source column `name`, if the mapping keeps it.
fn mapped<'a>(mapping: &'a TableMapping, name: &str) -> Option<&'a MappedColumn> {
    let index = mapping.source.columns.iter().position(|c| c.name == name)?;
    mapping
        .columns
        .iter()
        .find(|c| c.source_index == Some(index))
}

/// Whether the mapping changes the type of the source column feeding `column`.
fn retyped(mapping: &TableMapping, column: &MappedColumn) -> bool {
    column
        .source_index
        .is_some_and(|i| mapping.source.columns[i].type_sql != column.type_sql)
}

/// Rebuilds a source index for the mapping's destination table, or says why it cannot be:
/// a column is not replicated, an expression or predicate names a column the mapping renames,
/// drops or retypes, or an operator class or collation is set on a retyped column.
///
/// A unique btree index on plain columns with default options becomes a deferrable unique
/// constraint (checked at commit), so that changes applied in another order than the source's
/// statements cannot trip over a transient duplicate.
pub fn plan(mapping: &TableMapping, index: &SourceIndex) -> Result<IndexPlan, String> {
    for name in &index.referenced {
        match mapped(mapping, name) {
            None => {
                return Err(format!(
                    "its expression or predicate uses column {name}, which is not replicated"
                ))
            }
            Some(c) if c.name != *name || retyped(mapping, c) => {
                return Err(format!(
                    "its expression or predicate uses column {name}, which the mapping renames or retypes"
                ))
            }
            Some(_) => {}
        }
    }
    let mut keys = Vec::with_capacity(index.keys.len());
    let mut key_names = Vec::new();
    for key in &index.keys {
        keys.push(key_sql(mapping, key)?);
        key_names.push(match &key.target {
            IndexTarget::Column(name) => mapped(mapping, name).map_or("expr", |c| &c.name),
            IndexTarget::Expression(_) => "expr",
        });
    }
    let mut include = Vec::with_capacity(index.include.len());
    for name in &index.include {
        let column =
            mapped(mapping, name).ok_or_else(|| format!("its column {name} is not replicated"))?;
        include.push(quote_ident(&column.name));
    }
    let mut tail = String::new();
    if !include.is_empty() {
        tail.push_str(&format!(" INCLUDE ({})", include.join(", ")));
    }
    if let Some(with) = &index.with {
        tail.push_str(&format!(" WITH ({with})"));
    }
    let plain_keys = index.keys.iter().all(|k| {
        matches!(k.target, IndexTarget::Column(_))
            && k.opclass.is_none()
            && k.collation.is_none()
            && !k.descending
            && !k.nulls_first
    });
    let body = if index.unique && index.method == "btree" && plain_keys && index.predicate.is_none()
    {
        Body::Constraint(format!(
            "UNIQUE{} ({}){tail} DEFERRABLE INITIALLY DEFERRED",
            if index.nulls_not_distinct {
                " NULLS NOT DISTINCT"
            } else {
                ""
            },
            keys.join(", ")
        ))
    } else {
        let mut text = format!("USING {} ({})", quote_ident(&index.method), keys.join(", "));
        if index.nulls_not_distinct {
            text.push_str(" NULLS NOT DISTINCT");
        }
        text.push_str(&tail);
        if let Some(predicate) = &index.predicate {
            text.push_str(&format!(" WHERE ({predicate})"));
        }
        Body::Index {
            unique: index.unique,
            text,
        }
    };
    Ok(IndexPlan {
        source_name: index.name.clone(),
        derived_name: derived_name(
            &mapping.destination.name,
            &key_names,
            if index.unique { "key" } else { "idx" },
        ),
        body,
    })
}

/// One key column's SQL: the mapped column (or the expression) with its options.
fn key_sql(mapping: &TableMapping, key: &IndexColumn) -> Result<String, String> {
    let mut sql = match &key.target {
        IndexTarget::Column(name) => {
            let column =
                mapped(mapping, name).ok_or_else(|| format!("column {name} is not replicated"))?;
            if retyped(mapping, column) && (key.opclass.is_some() || key.collation.is_some()) {
                return Err(format!(
                    "column {name} has an operator class or collation and the mapping changes its type"
                ));
            }
            quote_ident(&column.name)
        }
        IndexTarget::Expression(text) => format!("({text})"),
    };
    if let Some(collation) = &key.collation {
        sql.push_str(&format!(" COLLATE {collation}"));
    }
    if let Some(opclass) = &key.opclass {
        sql.push(' ');
        sql.push_str(opclass);
    }
    match (key.descending, key.nulls_first) {
        (true, true) => sql.push_str(" DESC"),
        (true, false) => sql.push_str(" DESC NULLS LAST"),
        (false, true) => sql.push_str(" NULLS FIRST"),
        (false, false) => {}
    }
    Ok(sql)
}

/// `table_col1_col2_suffix`, cut to PostgreSQL's identifier length like its own index names.
fn derived_name(table: &str, columns: &[&str], suffix: &str) -> String {
    let mut name = format!("{table}_{}_{suffix}", columns.join("_"));
    if name.len() > MAX_IDENT {
        let mut cut = MAX_IDENT - suffix.len() - 1;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name = format!("{}_{suffix}", &name[..cut]);
    }
    name
}

/// What became of one index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Created now.
    Created,
    /// An index of this name already exists on the table.
    Existing,
    /// Not created (a warning names the index and the reason).
    Skipped,
}

/// Whether pgmorph created the destination table (only then does it add indexes).
pub async fn owns_table(client: &Client, table: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pgmorph.owned_tables WHERE relid = to_regclass($1))",
            &[&table],
        )
        .await?
        .get(0))
}

/// Whether `table` (quoted) has a unique index on exactly the columns `keys` (no expression,
/// no predicate): what `INSERT ... ON CONFLICT (keys)` needs.
pub async fn has_unique_key(
    client: &Client,
    table: &str,
    keys: &[String],
) -> Result<bool, tokio_postgres::Error> {
    let mut sorted = keys.to_vec();
    sorted.sort();
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i \
               WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL \
                 AND i.indexprs IS NULL \
                 AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a \
                      WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = $2::text[])",
            &[&table, &sorted],
        )
        .await?
        .get(0))
}

/// Creates the source's secondary indexes on the mapping's destination table, inside the
/// caller's open transaction. Indexes that already exist are left alone; an index that cannot
/// be rebuilt or whose creation fails is skipped with a warning (each is tried under its own
/// savepoint, so a failure does not abort the transaction). Errors only when the destination
/// connection fails.
pub async fn create(
    client: &Client,
    mapping: &TableMapping,
    indexes: &[SourceIndex],
) -> Result<Vec<Outcome>, tokio_postgres::Error> {
    let table = mapping.destination.quoted();
    let mut outcomes = Vec::with_capacity(indexes.len());
    for index in indexes {
        let plan = match plan(mapping, index) {
            Ok(plan) => plan,
            Err(reason) => {
                tracing::warn!(
                    table = %mapping.destination,
                    index = %index.name,
                    reason,
                    "source index not created on the destination"
                );
                outcomes.push(Outcome::Skipped);
                continue;
            }
        };
        let Some(name) = free_name(client, mapping, &plan).await? else {
            outcomes.push(Outcome::Existing);
            continue;
        };
        let sql = plan.sql(&table, &name);
        let started = std::time::Instant::now();
        client.batch_execute("SAVEPOINT pgmorph_index").await?;
        match client.batch_execute(&sql).await {
            Ok(()) => {
                client
                    .batch_execute("RELEASE SAVEPOINT pgmorph_index")
                    .await?;
                tracing::info!(
                    table = %mapping.destination,
                    index = %name,
                    seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
                    "index created"
                );
                outcomes.push(Outcome::Created);
            }
            Err(e) if e.as_db_error().is_some() => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT pgmorph_index")
                    .await?;
                tracing::warn!(
                    table = %mapping.destination,
                    index = %index.name,
                    statement = %sql,
                    error = %crate::error_chain::one_line(&e),
                    "source index could not be created on the destination"
                );
                outcomes.push(Outcome::Skipped);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outcomes)
}

/// The first of the plan's candidate names (the source name, then the derived name with
/// 1, 2, ... appended) free in the destination schema; `None` when a candidate is already a
/// secondary index of this very table (created by an earlier run).
async fn free_name(
    client: &Client,
    mapping: &TableMapping,
    plan: &IndexPlan,
) -> Result<Option<String>, tokio_postgres::Error> {
    let table = mapping.destination.quoted();
    let candidates = std::iter::once(plan.source_name.clone())
        .chain(std::iter::once(plan.derived_name.clone()))
        .chain((1..100).map(|n| {
            let suffix = n.to_string();
            let mut base = plan.derived_name.clone();
            while base.len() + suffix.len() > MAX_IDENT {
                base.pop();
            }
            base + &suffix
        }));
    for name in candidates {
        let taken = client
            .query_opt(
                "SELECT coalesce(i.indrelid = to_regclass($3) AND NOT i.indisprimary, false) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_index i ON i.indexrelid = c.oid \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&mapping.destination.schema, &name, &table],
            )
            .await?;
        match taken {
            None => return Ok(Some(name)),
            Some(row) if row.get::<_, bool>(0) => return Ok(None),
            Some(_) => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Column, ReplicaIdentity, TableName, TableSchema};

    fn mapping() -> TableMapping {
        let col = |name: &str, ty: &str| Column {
            name: name.into(),
            type_oid: 25,
            type_modifier: -1,
            type_sql: ty.into(),
            not_null: false,
            is_key: name == "id",
        };
        let mut m = TableMapping::identity(
            Arc::new(TableSchema {
                oid: 1,
                name: TableName::new("public", "orders"),
                columns: vec![
                    col("id", "integer"),
                    col("code", "text"),
                    col("grp", "integer"),
                    col("created", "timestamp with time zone"),
                    col("email", "text"),
                    col("secret", "text"),
                ],
                identity: ReplicaIdentity::Default,
                has_primary_key: true,
            }),
            "dst",
        );
        m.destination.name = "orders_v2".into();
        m.columns[1].name = "sku".into();
        m.columns[3].type_sql = "timestamp".into();
        m.columns.remove(5);
        m
    }

    fn index(name: &str, keys: Vec<IndexColumn>) -> SourceIndex {
        SourceIndex {
            name: name.into(),
            unique: false,
            nulls_not_distinct: false,
            method: "btree".into(),
            keys,
            include: Vec::new(),
            predicate: None,
            referenced: Vec::new(),
            with: None,
        }
    }

    const T: &str = "\"dst\".\"orders_v2\"";

    #[test]
    fn plain_unique_index_on_a_renamed_column_becomes_a_deferrable_constraint() {
        let mut i = index("orders_code_key", vec![IndexColumn::plain("code")]);
        i.unique = true;
        i.include = vec!["email".into()];
        let plan = plan(&mapping(), &i).unwrap();
        assert_eq!(plan.derived_name, "orders_v2_sku_key");
        assert_eq!(
            plan.sql(T, "orders_code_key"),
            "ALTER TABLE \"dst\".\"orders_v2\" ADD CONSTRAINT \"orders_code_key\" \
             UNIQUE (\"sku\") INCLUDE (\"email\") DEFERRABLE INITIALLY DEFERRED"
        );
    }

    #[test]
    fn ordering_opclass_method_and_predicate_are_kept() {
        let mut grp = IndexColumn::plain("grp");
        grp.descending = true;
        let mut created = IndexColumn::plain("created");
        created.nulls_first = true;
        let mut i = index("orders_grp_created_idx", vec![grp, created]);
        i.with = Some("fillfactor=70".into());
        assert_eq!(
            plan(&mapping(), &i).unwrap().sql(T, "x"),
            "CREATE INDEX \"x\" ON \"dst\".\"orders_v2\" USING \"btree\" \
             (\"grp\" DESC NULLS LAST, \"created\" NULLS FIRST) WITH (fillfactor=70)"
        );
        let mut code = IndexColumn::plain("code");
        code.opclass = Some("\"pg_catalog\".\"text_pattern_ops\"".into());
        let mut i = index("orders_code_like", vec![code]);
        i.unique = true;
        i.predicate = Some("grp > 0".into());
        i.referenced = vec!["grp".into()];
        assert_eq!(
            plan(&mapping(), &i).unwrap().sql(T, "y"),
            "CREATE UNIQUE INDEX \"y\" ON \"dst\".\"orders_v2\" USING \"btree\" \
             (\"sku\" \"pg_catalog\".\"text_pattern_ops\") WHERE (grp > 0)"
        );
        let mut email = IndexColumn::plain("email");
        email.target = IndexTarget::Expression("lower(email)".into());
        let mut i = index("orders_lower_email", vec![email]);
        i.method = "hash".into();
        i.referenced = vec!["email".into()];
        assert_eq!(
            plan(&mapping(), &i).unwrap().sql(T, "z"),
            "CREATE INDEX \"z\" ON \"dst\".\"orders_v2\" USING \"hash\" ((lower(email)))"
        );
    }

    #[test]
    fn renamed_dropped_or_retyped_columns_in_expressions_skip_the_index() {
        let mut expr = IndexColumn::plain("code");
        expr.target = IndexTarget::Expression("lower(code)".into());
        let mut i = index("orders_lower_code", vec![expr]);
        i.referenced = vec!["code".into()];
        assert!(plan(&mapping(), &i).unwrap_err().contains("column code"));
        let i = index("orders_secret", vec![IndexColumn::plain("secret")]);
        assert!(plan(&mapping(), &i).unwrap_err().contains("not replicated"));
        let mut i = index("orders_email_part", vec![IndexColumn::plain("email")]);
        i.predicate = Some("created > '2020-01-01'".into());
        i.referenced = vec!["created".into()];
        assert!(plan(&mapping(), &i).unwrap_err().contains("retypes"));
    }

    #[test]
    fn derived_names_fit_postgres_identifiers() {
        let long = "t".repeat(70);
        let name = derived_name(&long, &["a"], "idx");
        assert_eq!(name.len(), MAX_IDENT);
        assert!(name.ends_with("_idx"));
    }
}
