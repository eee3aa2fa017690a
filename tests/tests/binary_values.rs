//! Values the source sends in binary form (`source.binary_values`, on by default): built-in
//! types, enums and domains cross every apply path (COPY, single statements, set-based updates
//! and deletes, keyless tables) in their binary form; a refused row is named and set aside
//! with readable values; a table whose values must be text (a row plugin reads them) makes
//! the stream start again with text values, losing and repeating nothing.

use pgmorph::config::Config;
use pgmorph::pipeline::Mode;
use pgmorph_e2e::{
    capture_source_ddl, wait_same, wait_streaming, wait_until, Pair, RowPathOnly, Running,
};
use tokio_postgres::Client;

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE typed (
    id int PRIMARY KEY,
    i2 int2, i8 int8, n numeric, n_big numeric(40,20), f4 float4, f8 float8,
    t text, vc varchar(20), c char(5), b bool, ba bytea,
    d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
    u uuid, j json, jb jsonb, ip inet, m mood, p positive, r int4range, pt point, mo money,
    big text
);
CREATE TABLE arrays (id bigint PRIMARY KEY, ai int4[], at text[], ats timestamptz[]);
CREATE TABLE keyless (a int, b text, c jsonb, d timestamptz);
CREATE TABLE other_types (
    id bigint PRIMARY KEY,
    r int4range, tr tstzrange, nr numrange, mr int4multirange,
    mo money, bt bit(8), vb varbit, pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
    x xml, tv tsvector, tq tsquery, mac macaddr, mac8 macaddr8, o oid, pl pg_lsn, js jsonpath,
    cidr_ cidr, iv interval, tz timetz
);
ALTER TABLE keyless REPLICA IDENTITY FULL;
"#;

/// Rows `from..=to` of `typed`: every tenth has a TOASTed `big`.
fn typed_rows(from: i32, to: i32) -> String {
    format!(
        "INSERT INTO typed SELECT g, (g % 1000)::int2, g::int8 * 1000000000, g * 1.5,
           12345678901234567890.12345678901234567890 + g, g / 3.0, -1.5e-300 * g,
           'héllo ✓ ' || g, 'vc' || g, 'ab', g % 2 = 0, decode(lpad(to_hex(g), 8, '0'), 'hex'),
           '2026-02-28'::date + g, '23:59:59.999999', '12:00:00+05:30',
           '2000-01-01 00:00:00.000001'::timestamp + g * interval '1 day',
           '2026-11-25 12:34:56.789+02'::timestamptz + g * interval '1 second',
           '1 year 2 mons 3 days 04:05:06.7', md5(g::text)::uuid, json_build_object('g', g),
           jsonb_build_object('g', g, 'a', ARRAY[1, 2]), '192.168.0.1/24',
           (ARRAY['sad', 'ok', 'happy']::mood[])[1 + g % 3], g, int4range(g, g + 10),
           point(g, -g), (g * 1.25)::numeric::money,
           CASE WHEN g % 10 = 0 THEN repeat('x', 300000) || g END
         FROM generate_series({from}, {to}) g"
    )
}

const TABLES: [(&str, &str); 4] = [
    ("public.typed", "postgres.typed"),
    ("public.arrays", "postgres.arrays"),
    ("public.keyless", "postgres.keyless"),
    ("public.other_types", "postgres.other_types"),
];

/// Rows `from..=to` of `other_types`.
fn other_rows(from: i32, to: i32) -> String {
    format!(
        "INSERT INTO other_types SELECT g, int4range(g, g + 9), '[2026-01-01 00:00+00, 2026-02-01 00:00+00)',
           '(1.5, 2.5]', '{{[1,3), [5,7)}}', '$1,234.56', B'10101010', B'101', point(g, 2.5), '{{1,2,3}}',
           '[(0,0),(1,1)]', '(1,1),(0,0)', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(0,0),5>',
           '<a b=\"c\">text</a>', 'the quick brown fox', 'fox & dog', '08:00:2b:01:02:03',
           '08:00:2b:01:02:03:04:05', g, '16/B374D848', '$.a[*] ? (@ > 1)', '10.0.0.0/8',
           '1 day 02:03:04.5', '12:00:00+05:30'
         FROM generate_series({from}, {to}) g"
    )
}

/// The option list of the walsender's START_REPLICATION, once it streams.
async fn start_command(src: &Client) -> anyhow::Result<String> {
    let row = src
        .query_one(
            "SELECT string_agg(query, ' | ') FROM pg_stat_activity \
             WHERE backend_type = 'walsender' AND query LIKE 'START_REPLICATION%'",
            &[],
        )
        .await?;
    Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
}

/// The stream started again with text values.
async fn assert_text_values(src: &Client) -> anyhow::Result<()> {
    let command = start_command(src).await?;
    assert!(
        command.contains("START_REPLICATION") && !command.contains("binary"),
        "the stream started again with text values: {command}"
    );
    Ok(())
}

fn config(pair: &Pair, name: &str, destination_extra: &str) -> anyhow::Result<Config> {
    let mut text = pair.config_text(name, "", "schema = \"public\"");
    text.push_str(destination_extra);
    let path = pair.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, &text)?;
    Ok(Config::parse(&text, &path)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_values_cross_every_apply_path() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute(&typed_rows(1, 40)).await?;
    src.batch_execute(
        "INSERT INTO arrays SELECT g, ARRAY[g, NULL, 3], ARRAY['a,b', 'c\"d', NULL, ''],
           ARRAY['2026-01-01 00:00+00']::timestamptz[] FROM generate_series(1, 5) g;
         INSERT INTO keyless VALUES (1, 'one', '{\"k\": 1}', now()), (2, 'two', NULL, NULL),
           (2, 'two', NULL, NULL), (3, NULL, '[]', now());",
    )
    .await?;
    let config = config(&pair, "binvals", "")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "binvals", Some(&running)).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert!(
        start_command(&src).await?.contains("binary 'true'"),
        "the stream sends binary values by default"
    );

    // Many inserts in one transaction (one binary COPY), then one alone (a statement).
    src.batch_execute(&typed_rows(41, 140)).await?;
    src.batch_execute(&typed_rows(141, 141)).await?;
    src.batch_execute(&other_rows(1, 50)).await?;
    src.batch_execute(&other_rows(51, 51)).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    src.batch_execute(
        // Set-based: binary arrays of built-in, enum and domain values.
        "UPDATE typed SET t = t || '!', n = n + 1, iv = iv * 2, m = 'happy', p = p + 1,
           ts = ts + interval '1 hour', jb = jb || '{\"u\": true}' WHERE id <= 100;
         UPDATE typed SET i2 = 7 WHERE id = 10;
         UPDATE typed SET id = id + 1000 WHERE id = 141;
         UPDATE arrays SET ai = ai || 4, at = at || 'e'::text;
         DELETE FROM typed WHERE id BETWEEN 50 AND 70;
         DELETE FROM arrays WHERE id <= 2;
         UPDATE keyless SET b = b || '?', d = d + interval '1 day' WHERE a IN (1, 3);
         DELETE FROM keyless WHERE a = 1;
         UPDATE other_types SET pt = point(9, 9), r = '[5,6)', mo = mo + 1::money, tv = tv || 'jumps'::tsvector;
         DELETE FROM other_types WHERE id > 45;",
    )
    .await?;
    src.batch_execute(
        "DELETE FROM keyless WHERE ctid = (SELECT min(ctid) FROM keyless WHERE a = 2)",
    )
    .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    let rows: i64 = dst
        .query_one(
            "SELECT count(*) FROM postgres.typed WHERE big LIKE 'xxx%'",
            &[],
        )
        .await?
        .get(0);
    assert!(
        rows >= 10,
        "TOASTed values kept through updates that left them"
    );
    assert!(
        start_command(&src).await?.contains("binary 'true'"),
        "every change crossed in binary form: the stream never started again with text"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_binary_rows_are_set_aside_with_readable_values() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let config = config(&pair, "binrefused", "on_apply_error = \"dead_letter\"\n")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "binrefused", Some(&running)).await?;
    dst.batch_execute("ALTER TABLE postgres.typed ADD CONSTRAINT small CHECK (id < 1000)")
        .await?;
    src.batch_execute(&typed_rows(998, 1001)).await?;
    wait_until(
        &dst,
        "SELECT count(*) = 2 FROM pgmorph.dead_letters WHERE connector = 'binrefused'",
        Some(&running),
    )
    .await?;
    let row = dst
        .query_one(
            "SELECT row_key ->> 'id', row_data -> 'new' ->> 't', row_data -> 'new' ->> 'i8', \
               row_data -> 'new' ->> 'jb', row_data -> 'new' ->> 'u' \
             FROM pgmorph.dead_letters WHERE connector = 'binrefused' ORDER BY row_key ->> 'id' LIMIT 1",
            &[],
        )
        .await?;
    let values: (String, String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let expected: (String, String, String, String, String) = src
        .query_one(
            "SELECT id::text, t, i8::text, jb::text, u::text FROM typed WHERE id = 1000",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))?;
    assert_eq!(
        values, expected,
        "the refused row's values read as PostgreSQL prints them"
    );
    let kept: i64 = dst
        .query_one("SELECT count(*) FROM postgres.typed", &[])
        .await?
        .get(0);
    assert_eq!(kept, 2, "the accepted rows of the transaction are applied");
    assert!(start_command(&src).await?.contains("binary 'true'"));
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_plugin_table_switches_the_stream_to_text_values() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    src.batch_execute(&typed_rows(1, 20)).await?;
    let config = config(&pair, "bintext", "")?;
    let running = Running::start_with(&config, Mode::Initial, Box::new(RowPathOnly));
    wait_streaming(&dst, "bintext", Some(&running)).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert!(start_command(&src).await?.contains("binary 'true'"));

    // The first change of the table arrives in binary form; the row plugin needs text.
    src.batch_execute(&typed_rows(21, 80)).await?;
    src.batch_execute(
        "UPDATE typed SET t = t || '!' WHERE id % 3 = 0; DELETE FROM typed WHERE id < 5",
    )
    .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert_text_values(&src).await?;
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_destination_column_of_another_type_takes_text() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE widened (id int PRIMARY KEY, v int);
         INSERT INTO widened SELECT g, g * 10 FROM generate_series(1, 100) g;",
    )
    .await?;
    dst.batch_execute(
        "CREATE SCHEMA postgres; CREATE TABLE postgres.widened (id int PRIMARY KEY, v bigint)",
    )
    .await?;
    let config = config(&pair, "binwide", "")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "binwide", Some(&running)).await?;
    let widened = [("public.widened", "postgres.widened")];
    wait_same(&src, &dst, &widened, Some(&running)).await?;
    src.batch_execute(
        "INSERT INTO widened SELECT g, g * 10 FROM generate_series(101, 200) g;
         UPDATE widened SET v = v + 1 WHERE id % 2 = 0; DELETE FROM widened WHERE id < 10;",
    )
    .await?;
    wait_same(&src, &dst, &widened, Some(&running)).await?;
    assert_text_values(&src).await?;
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_source_type_change_makes_its_table_take_text() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, b text); INSERT INTO items VALUES (1, 'one');",
    )
    .await?;
    let config = config(&pair, "binskip", "on_ddl_error = \"skip\"\n")?;
    capture_source_ddl(&src, &config, "binskip", "items").await?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "binskip", Some(&running)).await?;
    assert!(start_command(&src).await?.contains("binary 'true'"));
    // The destination cannot cast 'one': the change is skipped and `b` stays text there, while
    // the source now sends integers.
    src.batch_execute("ALTER TABLE items ALTER COLUMN b TYPE int USING length(b)")
        .await?;
    src.batch_execute("INSERT INTO items SELECT g, g * 7 FROM generate_series(2, 100) g")
        .await?;
    wait_until(
        &dst,
        "SELECT count(*) = 100 AND bool_and(b = CASE id WHEN 1 THEN 'one' ELSE (id * 7)::text END) \
         FROM postgres.items",
        Some(&running),
    )
    .await?;
    assert_text_values(&src).await?;
    running.stop().await?;
    Ok(())
}
