//! The event triggers that put source DDL into the replication stream: after each DDL command
//! on a published table, a transactional logical message (prefix `pgmorph`) carries the
//! table's catalog state before and after the change, in order with the data around it.
//!
//! Objects on the source, in schema `pgmorph`: `ddl_state` (each published table's last known
//! state, per connector, written in the DDL's own transaction), `table_state(oid)` (the state
//! as JSON) and, per connector, two trigger functions and two event triggers
//! (`ddl_command_end` for changes, `sql_drop` for dropped tables).

use tokio_postgres::Client;

use crate::model::{quote_ident, quote_literal};

/// The prefix of the logical messages the triggers emit.
pub const MESSAGE_PREFIX: &str = "pgmorph";

/// Installing or removing the triggers failed.
#[derive(Debug, thiserror::Error)]
pub enum DdlTriggerError {
    /// The role may not create event triggers.
    #[error(
        "source role {0:?} may not create event triggers: setup-source --ddl needs a superuser \
         (the triggers run as their owner, so the role that changes tables needs no grant)"
    )]
    NotSuperuser(String),
    /// A statement failed.
    #[error("installing the DDL triggers on the source failed: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// The shared objects: state table and the function that describes a table.
const SHARED: &str = r#"
CREATE SCHEMA IF NOT EXISTS pgmorph;
CREATE TABLE IF NOT EXISTS pgmorph.ddl_state (
    connector text NOT NULL,
    relid     oid NOT NULL,
    state     jsonb NOT NULL,
    PRIMARY KEY (connector, relid)
);
CREATE OR REPLACE FUNCTION pgmorph.table_state(rel oid) RETURNS jsonb
LANGUAGE sql STABLE AS $f$
SELECT jsonb_build_object(
    'schema', n.nspname::text,
    'name', c.relname::text,
    'identity', c.relreplident::text,
    'columns', COALESCE((
        SELECT jsonb_agg(jsonb_build_object(
            'attnum', a.attnum, 'name', a.attname::text, 'type_oid', a.atttypid::int8,
            'typmod', a.atttypmod, 'type', format_type(a.atttypid, a.atttypmod),
            'not_null', a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid),
            'missing', CASE WHEN a.atthasmissing THEN (a.attmissingval::text::text[])[1] END)
            ORDER BY a.attnum)
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated = ''), '[]'::jsonb),
    'primary_key', EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
    'key', COALESCE((
        SELECT jsonb_agg(k.attnum ORDER BY k.ord)
        FROM (SELECT i.indkey FROM pg_index i
              WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)
              ORDER BY i.indisprimary DESC LIMIT 1) i,
             unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)), '[]'::jsonb))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = rel AND c.relkind IN ('r', 'p')
$f$;
"#;

/// The names of one connector's trigger functions and triggers.
struct Names {
    end_fn: String,
    drop_fn: String,
    end_trigger: String,
    drop_trigger: String,
}

fn names(connector: &str) -> Names {
    Names {
        end_fn: format!("pgmorph.{}", quote_ident(&format!("ddl_end_{connector}"))),
        drop_fn: format!("pgmorph.{}", quote_ident(&format!("ddl_drop_{connector}"))),
        end_trigger: quote_ident(&format!("pgmorph_ddl_{connector}")),
        drop_trigger: quote_ident(&format!("pgmorph_drop_{connector}")),
    }
}

/// The trigger functions and triggers of one connector, publishing through `publication`.
fn connector_sql(connector: &str, publication: &str, options: &Follow) -> String {
    let n = names(connector);
    let (conn, publ) = (quote_literal(connector), quote_literal(publication));
    let drop_tables = options.drop_tables;
    let schema = options
        .new_tables_in
        .as_deref()
        .map_or_else(|| "NULL::text".to_string(), quote_literal);
    format!(
        r#"
CREATE OR REPLACE FUNCTION {end_fn}() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
DECLARE
    rel oid;
    before jsonb;
    after jsonb;
BEGIN
    FOR rel IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands()
               WHERE classid = 'pg_class'::regclass AND object_type IN ('table', 'table column')
    LOOP
        IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() d
                   JOIN pg_class c ON c.oid = d.objid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE d.objid = rel AND d.command_tag = 'CREATE TABLE' AND n.nspname = {schema}
                     AND c.relkind = 'r' AND NOT c.relispartition AND c.relpersistence = 'p') THEN
            EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', {publ}, rel::regclass);
        END IF;
        SELECT state INTO before FROM pgmorph.ddl_state WHERE connector = {conn} AND relid = rel;
        IF before IS NULL AND NOT EXISTS (
            SELECT 1 FROM pg_publication_tables p
            JOIN pg_namespace n ON n.nspname = p.schemaname
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
            WHERE p.pubname = {publ} AND c.oid = rel) THEN
            CONTINUE;
        END IF;
        after := pgmorph.table_state(rel);
        CONTINUE WHEN after IS NULL OR after IS NOT DISTINCT FROM before;
        INSERT INTO pgmorph.ddl_state VALUES ({conn}, rel, after)
            ON CONFLICT (connector, relid) DO UPDATE SET state = EXCLUDED.state;
        PERFORM pg_logical_emit_message(true, 'pgmorph', jsonb_build_object(
            'connector', {conn}, 'tag', tg_tag, 'statement', current_query(), 'oid', rel::int8,
            'old', before, 'new', after)::text);
    END LOOP;
END
$f$;
CREATE OR REPLACE FUNCTION {drop_fn}() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
DECLARE
    rel oid;
    before jsonb;
BEGIN
    FOR rel IN SELECT objid FROM pg_event_trigger_dropped_objects()
               WHERE classid = 'pg_class'::regclass AND object_type = 'table' AND objsubid = 0
    LOOP
        DELETE FROM pgmorph.ddl_state WHERE connector = {conn} AND relid = rel
            RETURNING state INTO before;
        CONTINUE WHEN before IS NULL;
        PERFORM pg_logical_emit_message(true, 'pgmorph', jsonb_build_object(
            'connector', {conn}, 'tag', tg_tag, 'statement', current_query(), 'oid', rel::int8,
            'old', before, 'new', NULL, 'drop_destination', {drop_tables})::text);
    END LOOP;
END
$f$;
DROP EVENT TRIGGER IF EXISTS {end_trigger};
CREATE EVENT TRIGGER {end_trigger} ON ddl_command_end EXECUTE FUNCTION {end_fn}();
DROP EVENT TRIGGER IF EXISTS {drop_trigger};
CREATE EVENT TRIGGER {drop_trigger} ON sql_drop EXECUTE FUNCTION {drop_fn}();
INSERT INTO pgmorph.ddl_state
    SELECT {conn}, c.oid, pgmorph.table_state(c.oid)
    FROM pg_publication_tables p
    JOIN pg_namespace n ON n.nspname = p.schemaname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
    WHERE p.pubname = {publ}
    ON CONFLICT (connector, relid) DO UPDATE SET state = EXCLUDED.state;
"#,
        end_fn = n.end_fn,
        drop_fn = n.drop_fn,
        end_trigger = n.end_trigger,
        drop_trigger = n.drop_trigger,
    )
}

/// What the triggers follow besides changes of published tables.
#[derive(Debug, Clone, Default)]
pub struct Follow {
    /// A table dropped on the source is dropped on the destination too (otherwise kept).
    pub drop_tables: bool,
    /// Tables created in this schema join the publication and are replicated from their
    /// creation on (the connector replicates the whole schema).
    pub new_tables_in: Option<String>,
}

/// Installs (or refreshes) the connector's DDL triggers and records the current state of every
/// table in `publication`, in one transaction.
pub async fn install(
    client: &Client,
    connector: &str,
    publication: &str,
    options: &Follow,
) -> Result<(), DdlTriggerError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(1) {
        return Err(DdlTriggerError::NotSuperuser(row.get(0)));
    }
    let sql = format!(
        "BEGIN;{SHARED}{}COMMIT;",
        connector_sql(connector, publication, options)
    );
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e.into());
    }
    Ok(())
}

/// Whether the connector's DDL triggers are installed on the source.
pub async fn installed(client: &Client, connector: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM pg_event_trigger WHERE evtname = $1",
            &[&format!("pgmorph_ddl_{connector}")],
        )
        .await?
        .is_some())
}

/// Removes the connector's DDL triggers and state rows; the shared objects go with the last
/// connector. Returns whether the triggers were installed.
pub async fn remove(client: &Client, connector: &str) -> Result<bool, DdlTriggerError> {
    let n = names(connector);
    let installed = installed(client, connector).await?;
    let sql = format!(
        "BEGIN;
         DROP EVENT TRIGGER IF EXISTS {end_trigger};
         DROP EVENT TRIGGER IF EXISTS {drop_trigger};
         DROP FUNCTION IF EXISTS {end_fn}();
         DROP FUNCTION IF EXISTS {drop_fn}();
         DO $d$ BEGIN
             IF to_regclass('pgmorph.ddl_state') IS NOT NULL THEN
                 DELETE FROM pgmorph.ddl_state WHERE connector = {conn};
                 IF NOT EXISTS (SELECT 1 FROM pgmorph.ddl_state) THEN
                     DROP TABLE pgmorph.ddl_state;
                     DROP FUNCTION IF EXISTS pgmorph.table_state(oid);
                 END IF;
             END IF;
         END $d$;
         COMMIT;",
        end_trigger = n.end_trigger,
        drop_trigger = n.drop_trigger,
        end_fn = n.end_fn,
        drop_fn = n.drop_fn,
        conn = quote_literal(connector),
    );
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e.into());
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_names_are_quoted_in_the_trigger_sql() {
        let follow = Follow {
            drop_tables: true,
            new_tables_in: Some("o'k".into()),
        };
        let sql = connector_sql("it's", "pgmorph_it's", &follow);
        assert!(sql.contains("n.nspname = 'o''k'"), "{sql}");
        assert!(sql.contains("connector = 'it''s'"), "{sql}");
        assert!(sql.contains("p.pubname = 'pgmorph_it''s'"), "{sql}");
        assert!(sql.contains("CREATE EVENT TRIGGER \"pgmorph_ddl_it's\" ON ddl_command_end"));
        assert!(sql.contains("CREATE EVENT TRIGGER \"pgmorph_drop_it's\" ON sql_drop"));
        assert!(sql.contains("'drop_destination', true"), "{sql}");
    }
}
