//! Reading a source table's secondary indexes, so that the destination can get them too.

use tokio_postgres::Client;

use crate::model::TableSchema;
use crate::model::{IndexColumn, IndexTarget, SourceIndex};

/// Flags of `pg_index.indoption`.
const INDOPTION_DESC: i32 = 1;
const INDOPTION_NULLS_FIRST: i32 = 2;

/// The table's valid secondary indexes: every index but the primary key, the replica identity
/// index of a table without primary key (the destination's primary key stands for it) and
/// exclusion constraints.
pub async fn read(
    client: &Client,
    table: &TableSchema,
) -> Result<Vec<SourceIndex>, tokio_postgres::Error> {
    let heads = client
        .query(
            "SELECT i.indexrelid, c.relname::text, i.indisunique, \
                    coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false), \
                    am.amname::text, i.indexprs IS NOT NULL, pg_get_expr(i.indpred, i.indrelid), \
                    array_to_string(c.reloptions, ', ') \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
             WHERE i.indrelid = $1 AND NOT i.indisprimary AND i.indisvalid AND i.indislive \
               AND NOT i.indisexclusion AND NOT (i.indisreplident AND NOT $2) \
             ORDER BY c.relname",
            &[&table.oid, &table.has_primary_key],
        )
        .await?;
    let mut out = Vec::with_capacity(heads.len());
    for head in heads {
        let index_oid: u32 = head.get(0);
        let columns = client
            .query(
                "SELECT k.n <= i.indnkeyatts, a.attname::text, pg_get_indexdef(i.indexrelid, k.n, false), \
                        coalesce(i.indoption[k.n - 1], 0)::int4, \
                        CASE WHEN oc.oid IS NULL OR oc.opcdefault THEN NULL \
                             ELSE quote_ident(ocn.nspname) || '.' || quote_ident(oc.opcname) END, \
                        CASE WHEN co.oid IS NULL OR co.oid = coalesce(a.attcollation, 100) THEN NULL \
                             ELSE quote_ident(con.nspname) || '.' || quote_ident(co.collname) END \
                 FROM pg_index i \
                 CROSS JOIN generate_series(1, i.indnatts::int4) AS k(n) \
                 LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.n - 1] \
                      AND i.indkey[k.n - 1] > 0 \
                 LEFT JOIN pg_opclass oc ON oc.oid = i.indclass[k.n - 1] \
                 LEFT JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace \
                 LEFT JOIN pg_collation co ON co.oid = i.indcollation[k.n - 1] \
                 LEFT JOIN pg_namespace con ON con.oid = co.collnamespace \
                 WHERE i.indexrelid = $1 ORDER BY k.n",
                &[&index_oid],
            )
            .await?;
        let mut keys = Vec::new();
        let mut include = Vec::new();
        for c in &columns {
            let is_key: bool = c.get(0);
            let column: Option<String> = c.get(1);
            let definition: String = c.get(2);
            let options: i32 = c.get(3);
            if !is_key {
                // INCLUDE columns are always plain columns.
                include.push(column.unwrap_or(definition));
                continue;
            }
            keys.push(IndexColumn {
                target: match column {
                    Some(name) => IndexTarget::Column(name),
                    None => IndexTarget::Expression(definition),
                },
                opclass: c.get(4),
                collation: c.get(5),
                descending: options & INDOPTION_DESC != 0,
                nulls_first: options & INDOPTION_NULLS_FIRST != 0,
            });
        }
        let predicate: Option<String> = head.get(6);
        let has_expressions: bool = head.get(5);
        let referenced = if has_expressions || predicate.is_some() {
            client
                .query(
                    "SELECT DISTINCT a.attname::text FROM pg_depend d \
                     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = $1 \
                       AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 ORDER BY 1",
                    &[&index_oid],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            Vec::new()
        };
        out.push(SourceIndex {
            name: head.get(1),
            unique: head.get(2),
            nulls_not_distinct: head.get(3),
            method: head.get(4),
            keys,
            include,
            predicate,
            referenced,
            with: head.get::<_, Option<String>>(7).filter(|s| !s.is_empty()),
        });
    }
    Ok(out)
}
