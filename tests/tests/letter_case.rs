//! The `letter-case` example plugin through the real binary: SynchDB's `lowercase` and
//! `uppercase` strategies applied to schema, table and column names, snapshot and CDC.

mod plugin_support;

use pgmorph_e2e::{spawn_bin, wait_same, wait_streaming, wait_until, Pair};

const SCHEMA: &str = r#"
CREATE TABLE "Customers" ("Id" int PRIMARY KEY, "FullName" text, city text);
INSERT INTO "Customers" SELECT g, 'Name ' || g, 'c' || g % 7 FROM generate_series(1, 500) g;
"#;

const CDC: &str = r#"
INSERT INTO "Customers" SELECT g, 'New ' || g, 'x' FROM generate_series(501, 600) g;
UPDATE "Customers" SET "FullName" = 'Renamed' WHERE "Id" % 10 = 0;
DELETE FROM "Customers" WHERE "Id" % 25 = 0;
"#;

/// The destination's `(schema, column names)` of the table called `table`.
async fn layout(client: &tokio_postgres::Client, table: &str) -> anyhow::Result<(String, String)> {
    let row = client
        .query_one(
            "SELECT table_schema::text, string_agg(column_name::text, ',' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_name = $1 GROUP BY 1",
            &[&table],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowercase_and_uppercase_name_the_destination_as_synchdb_does() -> anyhow::Result<()> {
    let pair = Pair::start()?;
    let (src, dst) = pair.clients().await?;
    src.batch_execute(SCHEMA).await?;
    let mut children = Vec::new();
    for (name, strategy) in [("lower", "lowercase"), ("upper", "uppercase")] {
        let (args, log) = plugin_support::binary_run(
            &pair,
            name,
            "schema = \"public\"",
            &[(
                "10-letter-case",
                "letter-case",
                &format!("config = {{ strategy = \"{strategy}\" }}"),
            )],
        )?;
        children.push((spawn_bin(&args, &log), log));
    }
    for (name, (_, log)) in ["lower", "upper"].iter().zip(&children) {
        wait_streaming(&dst, name, None)
            .await
            .map_err(|e| e.context(std::fs::read_to_string(log).unwrap_or_default()))?;
    }
    // Lower case: `public` is unchanged, so the table lands in the default destination schema.
    assert_eq!(
        layout(&dst, "customers").await?,
        ("postgres".into(), "id,fullname,city".into())
    );
    let (schema, columns) = layout(&dst, "CUSTOMERS").await?;
    assert_eq!(columns, "ID,FULLNAME,CITY");
    assert_eq!(
        schema,
        schema.to_uppercase(),
        "the schema is upper case too"
    );
    let upper = format!("\"{schema}\".\"CUSTOMERS\"");
    let tables = [
        ("public.\"Customers\"", "postgres.customers"),
        ("public.\"Customers\"", upper.as_str()),
    ];
    wait_same(&src, &dst, &tables, None).await?;
    src.batch_execute(CDC).await?;
    wait_same(&src, &dst, &tables, None).await?;
    wait_until(
        &dst,
        &format!(
            "SELECT count(*) = 8 FROM {upper} WHERE \"FULLNAME\" = 'Renamed' AND \"ID\" > 500"
        ),
        None,
    )
    .await?;
    for (mut child, _) in children {
        child.stop_cleanly()?;
    }
    Ok(())
}
