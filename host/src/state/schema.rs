//! DDL of the state tables.

/// The destination schema holding pgmorph's own tables.
pub const STATE_SCHEMA: &str = "pgmorph";

/// Creates the state tables if missing (run under an advisory lock).
pub(crate) const CREATE: &str = r#"
CREATE SCHEMA IF NOT EXISTS pgmorph;
CREATE TABLE IF NOT EXISTS pgmorph.state (
    name           text PRIMARY KEY,
    connector_type text NOT NULL DEFAULT 'postgres',
    pid            integer NOT NULL DEFAULT -1,
    stage          text NOT NULL DEFAULT 'initial snapshot',
    state          text NOT NULL DEFAULT 'stopped',
    err            text NOT NULL DEFAULT 'no error',
    last_offset    jsonb,
    snapshot_done  boolean NOT NULL DEFAULT false,
    dest_schema    text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgmorph.tables (
    connector    text NOT NULL,
    source_table text NOT NULL,
    dest_table   text NOT NULL,
    phase        text NOT NULL DEFAULT 'pending',
    rows_copied  bigint NOT NULL DEFAULT 0,
    last_change  timestamptz,
    PRIMARY KEY (connector, source_table)
);
ALTER TABLE pgmorph.tables ADD COLUMN IF NOT EXISTS sync_lsn pg_lsn;
ALTER TABLE pgmorph.state ADD COLUMN IF NOT EXISTS request text;
ALTER TABLE pgmorph.state ADD COLUMN IF NOT EXISTS err_kind text;
ALTER TABLE pgmorph.state ADD COLUMN IF NOT EXISTS retries integer NOT NULL DEFAULT 0;
ALTER TABLE pgmorph.state ADD COLUMN IF NOT EXISTS retries_total integer NOT NULL DEFAULT 0;
ALTER TABLE pgmorph.state ADD COLUMN IF NOT EXISTS last_retry_error text;
ALTER TABLE pgmorph.state ADD COLUMN IF NOT EXISTS last_retry_at timestamptz;
CREATE TABLE IF NOT EXISTS pgmorph.attributes (
    connector     text NOT NULL,
    source_table  text NOT NULL,
    dest_table    text,
    attnum        integer NOT NULL,
    source_column text,
    dest_column   text,
    source_type   text,
    dest_type     text,
    changed_by    text,
    PRIMARY KEY (connector, source_table, attnum)
);
CREATE TABLE IF NOT EXISTS pgmorph.plugins (
    connector      text NOT NULL,
    plugin         text NOT NULL,
    hash           text NOT NULL,
    loaded_at      timestamptz NOT NULL DEFAULT now(),
    reloads        integer NOT NULL DEFAULT 0,
    failed_reloads integer NOT NULL DEFAULT 0,
    last_error     text,
    active         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (connector, plugin)
);
CREATE OR REPLACE VIEW pgmorph.att_view AS
    SELECT connector AS name, source_table, dest_table, attnum, source_column, dest_column,
           source_type, dest_type, changed_by
    FROM pgmorph.attributes;
CREATE TABLE IF NOT EXISTS pgmorph.stats (
    connector      text PRIMARY KEY,
    transactions   bigint NOT NULL DEFAULT 0,
    inserts        bigint NOT NULL DEFAULT 0,
    updates        bigint NOT NULL DEFAULT 0,
    deletes        bigint NOT NULL DEFAULT 0,
    truncates      bigint NOT NULL DEFAULT 0,
    skipped        bigint NOT NULL DEFAULT 0,
    dead_lettered  bigint NOT NULL DEFAULT 0,
    snapshot_rows  bigint NOT NULL DEFAULT 0,
    snapshot_begin timestamptz,
    snapshot_end   timestamptz,
    first_change_at timestamptz,
    last_change_at timestamptz,
    last_source_commit_at timestamptz
);
CREATE TABLE IF NOT EXISTS pgmorph.dead_letters (
    id          bigserial PRIMARY KEY,
    connector   text NOT NULL,
    source_table text NOT NULL,
    op          text NOT NULL,
    lsn         text NOT NULL,
    plugin      text NOT NULL,
    error       text NOT NULL,
    row_data    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgmorph.dead_letters ADD COLUMN IF NOT EXISTS sqlstate text;
ALTER TABLE pgmorph.dead_letters ADD COLUMN IF NOT EXISTS row_key jsonb;
ALTER TABLE pgmorph.dead_letters ALTER COLUMN plugin DROP NOT NULL;
CREATE TABLE IF NOT EXISTS pgmorph.copied_ranges (
    connector    text NOT NULL,
    source_table text NOT NULL,
    first_page   bigint NOT NULL,
    end_page     bigint,
    snapshot     text NOT NULL,
    layout       text NOT NULL,
    dest_file    oid,
    PRIMARY KEY (connector, source_table, first_page)
);
CREATE TABLE IF NOT EXISTS pgmorph.owned_tables (
    relid      oid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgmorph.sequence_syncs (
    connector text PRIMARY KEY,
    synced_at timestamptz NOT NULL,
    sequences integer NOT NULL
);
CREATE TABLE IF NOT EXISTS pgmorph.ddl_history (
    id           bigserial PRIMARY KEY,
    connector    text NOT NULL,
    lsn          text NOT NULL,
    source_table text NOT NULL,
    dest_table   text NOT NULL,
    tag          text NOT NULL,
    statement    text NOT NULL,
    applied      text[] NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgmorph.ddl_history ADD COLUMN IF NOT EXISTS skipped boolean NOT NULL DEFAULT false;
ALTER TABLE pgmorph.ddl_history ADD COLUMN IF NOT EXISTS error text;
CREATE TABLE IF NOT EXISTS pgmorph.snapshot_progress (
    connector    text NOT NULL,
    source_table text NOT NULL,
    rows         bigint NOT NULL,
    est_rows     bigint,
    bytes        bigint NOT NULL,
    est_bytes    bigint NOT NULL,
    seconds      double precision NOT NULL,
    done         boolean NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, source_table)
);
CREATE TABLE IF NOT EXISTS pgmorph.apply_lanes (
    connector text NOT NULL,
    lane      integer NOT NULL,
    lsn       pg_lsn NOT NULL,
    PRIMARY KEY (connector, lane)
);
CREATE OR REPLACE VIEW pgmorph.state_view AS
    SELECT name, connector_type, pid, stage, state, err, last_offset FROM pgmorph.state;
"#;
