//! Every supported type survives the snapshot and the change stream exactly.

use pgmorph::pipeline::Mode;
use pgmorph::transform::{Identity, Transform};
use pgmorph_e2e::{wait_same, wait_streaming, Pair, RowPathOnly, Running};

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE core_types (
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8,
    n numeric, n_big numeric(40,20),
    f4 float4, f8 float8,
    t text, vc varchar(20), c char(5), b bool, ba bytea,
    d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
    u uuid, j json, jb jsonb, ip inet, net cidr,
    ai int4[], at text[], an numeric[], ats timestamptz[],
    m mood, ma mood[], p positive,
    big text
);
CREATE TABLE other_types (
    id bigint PRIMARY KEY,
    r int4range, tr tstzrange, nr numrange, mr int4multirange,
    mo money, bt bit(8), vb varbit, pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
    x xml, tv tsvector, tq tsquery, mac macaddr, mac8 macaddr8, o oid, pl pg_lsn, js jsonpath
);
"#;

fn core_row(id: i32) -> String {
    format!(
        "INSERT INTO core_types VALUES ({id}, -32768, 2147483647, -9223372036854775808,
          'NaN', 12345678901234567890.12345678901234567890,
          'Infinity', -1.5e-300,
          'héllo wörld ✓ 日本語 ' || {id}, 'varchar', 'ab', true, '\\x00ff10'::bytea,
          '2026-02-28', '23:59:59.999999', '12:00:00+05:30', '2000-01-01 00:00:00.000001',
          '2026-11-25 12:34:56.789+02', '1 year 2 mons 3 days 04:05:06.7',
          'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"b\": 1,  \"a\": [1,2]}}', '{{\"b\": 1, \"a\": [1,2]}}',
          '192.168.0.1/24', '10.0.0.0/8',
          ARRAY[1, NULL, 3], ARRAY['a,b', 'c\"d', NULL, ''], ARRAY[1.5, 'NaN']::numeric[],
          ARRAY['2026-01-01 00:00+00']::timestamptz[],
          'happy', ARRAY['sad', 'ok']::mood[], {id},
          repeat('x', 1100000) || {id})"
    )
}

const OTHER_ROW: &str = r#"INSERT INTO other_types VALUES (1,
    '[1,10)', '[2026-01-01 00:00+00, 2026-02-01 00:00+00)', '(1.5, 2.5]', '{[1,3), [5,7)}',
    '$1,234.56', B'10101010', B'101', '(1.5,2.5)', '{1,2,3}', '[(0,0),(1,1)]', '(1,1),(0,0)',
    '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(0,0),5>',
    '<a b="c">text</a>', 'the quick brown fox', 'fox & dog', '08:00:2b:01:02:03',
    '08:00:2b:01:02:03:04:05', 42, '16/B374D848', '$.a[*] ? (@ > 1)')"#;

/// Values that COPY text must escape: tab, newline, carriage return, backslash, and a text
/// that reads like the NULL marker.
fn escapes_row(id: i32) -> String {
    format!(
        "INSERT INTO core_types (id, t, vc, at, ba, j) VALUES ({id}, E'tab\\there\\nnew\\\\line\\rcr', E'\\\\N',
          ARRAY[E'a\\tb', E'back\\\\slash', E'\\\\N'], '\\x5c0a09'::bytea, E'{{\"k\": \"q\\\\\\\\u0041\\\\n\"}}')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_snapshot_and_cdc() -> anyhow::Result<()> {
    round_trip("types", Box::new(Identity)).await
}

/// The same values through the row path: each one decoded from COPY text or pgoutput into a
/// cell, passed through the row step and encoded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_the_row_path() -> anyhow::Result<()> {
    round_trip("rowpath", Box::new(RowPathOnly)).await
}

async fn round_trip(name: &str, transform: Box<dyn Transform>) -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    for id in 1..=3 {
        src.batch_execute(&core_row(id)).await?;
    }
    src.batch_execute("INSERT INTO core_types (id) VALUES (100)")
        .await?; // all NULLs
    src.batch_execute(&escapes_row(200)).await?;
    src.batch_execute(OTHER_ROW).await?;
    // Built-in types only: this table travels in COPY's binary format.
    src.batch_execute(
        "CREATE TABLE core_builtin (LIKE core_types INCLUDING ALL);
         ALTER TABLE core_builtin DROP COLUMN m, DROP COLUMN ma, DROP COLUMN p;
         INSERT INTO core_builtin SELECT id, i2, i4, i8, n, n_big, f4, f8, t, vc, c, b, ba, d, tm, ttz, ts, tstz, iv,
             u, j, jb, ip, net, ai, at, an, ats, big FROM core_types;",
    )
    .await?;

    let (_, config) = pair.config(name, "", "schema = \"public\"")?;
    let running = Running::start_with(&config, Mode::Initial, transform);
    wait_streaming(&dst, name, Some(&running)).await?;
    let tables = [
        ("public.core_types", "postgres.core_types"),
        ("public.other_types", "postgres.other_types"),
        ("public.core_builtin", "postgres.core_builtin"),
    ];
    wait_same(&src, &dst, &tables, Some(&running)).await?;

    // The destination types are the source types, enum and domain included.
    dst.batch_execute("SET search_path = pg_catalog").await?;
    let types: Vec<String> = dst
        .query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'postgres.core_types'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(types.contains(&"numeric(40,20)".to_string()), "{types:?}");
    assert!(types.contains(&"postgres.mood[]".to_string()), "{types:?}");
    assert!(
        types.contains(&"postgres.positive".to_string()),
        "{types:?}"
    );

    dst.batch_execute("RESET search_path").await?;

    // The same values through the change stream.
    for id in 4..=5 {
        src.batch_execute(&core_row(id)).await?;
    }
    src.batch_execute(&OTHER_ROW.replace("VALUES (1,", "VALUES (2,"))
        .await?;
    src.batch_execute("INSERT INTO core_types (id) VALUES (101)")
        .await?;
    src.batch_execute(&escapes_row(201)).await?;
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    // Every type through a set-based update (many rows, one statement on the destination).
    src.batch_execute(
        "UPDATE core_types SET t = coalesce(t, '') || '!', ai = ai || 4, ma = ma || 'happy'::mood, iv = iv * 2;
         UPDATE other_types SET pt = point(9, 9), r = '[5,6)', mo = mo + 1::money;",
    )
    .await?;
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    let big: i32 = dst
        .query_one(
            "SELECT length(big) FROM postgres.core_types WHERE id = 5",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(big, 1_100_001);
    running.stop().await?;
    Ok(())
}
