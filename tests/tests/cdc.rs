//! Change data capture: every kind of change, in multi-table transactions, applied exactly.

use pgmorph::pipeline::Mode;
use pgmorph_e2e::{digest, wait_same, wait_streaming, Pair, Running};

const SCHEMA: &str = r#"
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL, doc text);
CREATE TABLE entries (id bigserial PRIMARY KEY, account int NOT NULL, amount numeric NOT NULL);
CREATE TABLE events (kind text, payload jsonb, at timestamptz);
ALTER TABLE events REPLICA IDENTITY FULL;
CREATE TABLE pairs (a int, b text, note text, PRIMARY KEY (a, b));
INSERT INTO accounts SELECT g, 'owner ' || g, 100, CASE WHEN g = 1 THEN repeat('toast me ', 50000) END
    FROM generate_series(1, 10) g;
INSERT INTO events VALUES ('boot', '{"v": 1}', '2026-01-01 00:00+00'), ('boot', '{"v": 1}', '2026-01-01 00:00+00');
"#;

const TABLES: [(&str, &str); 4] = [
    ("public.accounts", "postgres.accounts"),
    ("public.entries", "postgres.entries"),
    ("public.events", "postgres.events"),
    ("public.pairs", "postgres.pairs"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_every_change_kind_exactly() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let (_, config) = pair.config("cdc", "", "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "cdc", Some(&running)).await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;

    // A multi-table transaction: transfer money and log entries.
    src.batch_execute(
        "BEGIN;
         UPDATE accounts SET balance = balance - 30 WHERE id = 2;
         UPDATE accounts SET balance = balance + 30 WHERE id = 3;
         INSERT INTO entries (account, amount) VALUES (2, -30), (3, 30);
         INSERT INTO pairs VALUES (1, 'x', 'first'), (1, 'y', NULL);
         COMMIT;",
    )
    .await?;
    // Unchanged TOASTed column: the update must not null it out.
    src.batch_execute("UPDATE accounts SET balance = 1 WHERE id = 1")
        .await?;
    // Primary key changes, single and composite.
    src.batch_execute("UPDATE accounts SET id = 1000 WHERE id = 4")
        .await?;
    src.batch_execute("UPDATE pairs SET b = 'z' WHERE a = 1 AND b = 'y'")
        .await?;
    // Keyless table under REPLICA IDENTITY FULL: exactly one of two identical rows changes.
    src.batch_execute(
        "UPDATE events SET kind = 'changed' WHERE ctid = (SELECT min(ctid) FROM events)",
    )
    .await?;
    src.batch_execute(
        "INSERT INTO events VALUES ('x', NULL, NULL); DELETE FROM events WHERE kind = 'x'",
    )
    .await?;
    // Many updates in one statement (one set-based statement on the destination), the same key
    // twice in one transaction, and values set to NULL.
    src.batch_execute("UPDATE accounts SET owner = owner || ' (checked)', doc = NULL WHERE id > 1")
        .await?;
    src.batch_execute(
        "BEGIN; UPDATE accounts SET balance = 5 WHERE id = 7; UPDATE accounts SET balance = 6 WHERE id = 8;
         UPDATE accounts SET balance = 7 WHERE id = 7; COMMIT;",
    )
    .await?;
    // Deletes.
    src.batch_execute("DELETE FROM accounts WHERE id IN (5, 6)")
        .await?;
    // A rolled-back transaction leaves no trace.
    src.batch_execute("BEGIN; INSERT INTO accounts VALUES (77, 'ghost', 0); DELETE FROM accounts WHERE id = 7; ROLLBACK;")
        .await?;
    // Many rows in one transaction (batched into COPY), then a marker.
    src.batch_execute(
        "INSERT INTO entries (account, amount) SELECT g % 10, g FROM generate_series(1, 5000) g",
    )
    .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;

    let toast: i64 = dst
        .query_one(
            "SELECT length(doc)::int8 FROM postgres.accounts WHERE id = 1",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(toast, 450_000, "the unchanged TOASTed value was kept");
    let ghost = dst
        .query_opt("SELECT 1 FROM postgres.accounts WHERE id = 77", &[])
        .await?;
    assert!(ghost.is_none(), "rolled-back insert must not appear");

    // TRUNCATE of two tables in one statement.
    src.batch_execute("TRUNCATE entries, pairs").await?;
    src.batch_execute("INSERT INTO pairs VALUES (9, 'after', 'truncate')")
        .await?;
    wait_same(&src, &dst, &TABLES, Some(&running)).await?;
    assert_eq!(digest(&dst, "postgres.entries").await?.0, 0);

    // Counters saw the work.
    let (ins, upd, del, tru): (i64, i64, i64, i64) = {
        let r = dst
            .query_one("SELECT inserts, updates, deletes, truncates FROM pgmorph.stats WHERE connector = 'cdc'", &[])
            .await?;
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    assert!(
        ins >= 5005 && upd >= 18 && del >= 3 && tru == 2,
        "{ins} {upd} {del} {tru}"
    );
    running.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_column_added_while_streaming_reaches_the_destination() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a')",
    )
    .await?;
    let (_, config) = pair.config("evolve", "", "tables = [\"public.items\"]")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "evolve", Some(&running)).await?;
    src.batch_execute(
        "ALTER TABLE items ADD COLUMN price numeric(8,2); INSERT INTO items VALUES (2, 'b', 9.99)",
    )
    .await?;
    src.batch_execute("UPDATE items SET price = 1.50 WHERE id = 1")
        .await?;
    wait_same(
        &src,
        &dst,
        &[("public.items", "postgres.items")],
        Some(&running),
    )
    .await?;
    running.stop().await?;
    Ok(())
}

/// TPC-B-like transactions: three tables updated and one appended in every transaction, the same
/// branch and teller rows updated again and again. Applied grouped per table (one statement per
/// table and group), the destination must still end equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_transactions_with_hot_rows_apply_exactly() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(
        "CREATE TABLE branches (bid int PRIMARY KEY, bbalance int NOT NULL);
         CREATE TABLE tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance int NOT NULL);
         CREATE TABLE accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler text);
         CREATE TABLE history (tid int, bid int, aid int, delta int, mtime timestamptz);
         ALTER TABLE history REPLICA IDENTITY FULL;
         INSERT INTO branches VALUES (1, 0);
         INSERT INTO tellers SELECT g, 1, 0 FROM generate_series(1, 10) g;
         INSERT INTO accounts SELECT g, 1, 0, repeat('f', 80) FROM generate_series(1, 1000) g;",
    )
    .await?;
    let (_, config) = pair.config("tpcb", "", "schema = \"public\"")?;
    let running = Running::start(&config, Mode::Initial);
    wait_streaming(&dst, "tpcb", Some(&running)).await?;
    running.stop().await?;
    // A backlog, so that many transactions share a destination transaction.
    for i in 0..600 {
        let (aid, tid, delta) = (i * 7 % 1000 + 1, i % 10 + 1, i % 13 - 6);
        src.batch_execute(&format!(
            "BEGIN;
             UPDATE accounts SET abalance = abalance + {delta} WHERE aid = {aid};
             UPDATE tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};
             UPDATE branches SET bbalance = bbalance + {delta} WHERE bid = 1;
             INSERT INTO history VALUES ({tid}, 1, {aid}, {delta}, '2026-01-01');
             COMMIT;"
        ))
        .await?;
    }
    let running = Running::start(&config, Mode::Initial);
    let tables = [
        ("public.branches", "postgres.branches"),
        ("public.tellers", "postgres.tellers"),
        ("public.accounts", "postgres.accounts"),
        ("public.history", "postgres.history"),
    ];
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    let txs: i64 = dst
        .query_one(
            "SELECT transactions FROM pgmorph.stats WHERE connector = 'tpcb'",
            &[],
        )
        .await?
        .get(0);
    assert!(txs >= 600, "every source transaction is counted: {txs}");
    running.stop().await?;

    // With a foreign key on the destination, changes keep their order across tables.
    dst.batch_execute(
        "ALTER TABLE postgres.tellers ADD FOREIGN KEY (bid) REFERENCES postgres.branches (bid)",
    )
    .await?;
    for i in 0..200 {
        src.batch_execute(&format!(
            "BEGIN; UPDATE tellers SET tbalance = tbalance + 1 WHERE tid = {};
             UPDATE branches SET bbalance = bbalance + 1 WHERE bid = 1; COMMIT;",
            i % 10 + 1
        ))
        .await?;
    }
    let running = Running::start(&config, Mode::Initial);
    wait_same(&src, &dst, &tables, Some(&running)).await?;
    running.stop().await?;
    Ok(())
}
