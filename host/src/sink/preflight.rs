//! What `pgmorph validate` reads from the destination, changing nothing: whether the role
//! may create the schemas and tables a run creates.

use tokio_postgres::Client;

/// Whether the role may create objects in one destination schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaAccess {
    /// The schema.
    pub schema: String,
    /// Whether it exists already.
    pub exists: bool,
    /// Whether the role may create what a run needs there: tables in the existing schema
    /// (CREATE on it), or the schema itself (CREATE on the database).
    pub may_create: bool,
}

/// Whether this session runs over TLS, and the database's name.
pub async fn session(client: &Client) -> Result<(bool, String), tokio_postgres::Error> {
    let r = client
        .query_one(
            "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
                    current_database()::text",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// The role's access to `schema` on the destination.
pub async fn schema_access(
    client: &Client,
    schema: &str,
) -> Result<SchemaAccess, tokio_postgres::Error> {
    let r = client
        .query_one(
            "SELECT n.oid IS NOT NULL, \
                    CASE WHEN n.oid IS NULL THEN has_database_privilege(current_database(), 'CREATE') \
                         ELSE has_schema_privilege(n.oid, 'CREATE') END \
             FROM (SELECT $1::text AS name) s LEFT JOIN pg_namespace n ON n.nspname = s.name",
            &[&schema],
        )
        .await?;
    Ok(SchemaAccess {
        schema: schema.to_string(),
        exists: r.get(0),
        may_create: r.get(1),
    })
}
