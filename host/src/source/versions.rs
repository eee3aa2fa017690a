//! What each source major version supports, and the refusal when the config asks for more:
//! failover slots need PostgreSQL 17, publication row filters PostgreSQL 15.

use tokio_postgres::Client;

use crate::config::Config;

/// The first `server_version_num` with publication row filters.
pub const ROW_FILTERS: u32 = 150_000;
/// The first `server_version_num` with failover slots.
pub const FAILOVER_SLOTS: u32 = pgmorph_replication::replication::FAILOVER_VERSION_NUM;

/// The config asks for a feature the source's PostgreSQL lacks.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// `source.failover_slot` on a source older than 17.
    #[error(
        "source.failover_slot = true needs PostgreSQL 17 or later (failover slots), but the \
         source runs PostgreSQL {0}: remove source.failover_slot (or set it to false), or \
         upgrade the source to 17 or later"
    )]
    FailoverSlot(String),
    /// `[source.row_filters]` on a source older than 15.
    #[error(
        "[source.row_filters] needs PostgreSQL 15 or later (publication row filters), but the \
         source runs PostgreSQL {0}: remove the row filters ({1}), or upgrade the source to 15 \
         or later"
    )]
    RowFilters(String, String),
}

/// The server's `server_version_num` (e.g. 170002).
pub async fn server_version_num(client: &Client) -> Result<u32, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?;
    Ok(row.get::<_, i32>(0).max(0) as u32)
}

/// `server_version_num` as people write it: `170002` is `17.2`.
pub fn version_words(server_version_num: u32) -> String {
    format!(
        "{}.{}",
        server_version_num / 10_000,
        server_version_num % 10_000
    )
}

/// Refuses a config whose source features the server lacks.
pub fn check(config: &Config, server_version_num: u32) -> Result<(), VersionError> {
    let version = || version_words(server_version_num);
    if config.source.failover_slot && server_version_num < FAILOVER_SLOTS {
        return Err(VersionError::FailoverSlot(version()));
    }
    let filters = config.row_filters();
    if !filters.is_empty() && server_version_num < ROW_FILTERS {
        let tables: Vec<String> = filters.keys().map(ToString::to_string).collect();
        return Err(VersionError::RowFilters(version(), tables.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(source_extra: &str) -> Config {
        let text = format!(
            "name = \"c\"\n[source]\nurl = \"postgres://u@h/db\"\n{source_extra}\n\
             [destination]\nurl = \"postgres://u@h2/db\"\n"
        );
        Config::parse(&text, Path::new("c.toml")).unwrap()
    }

    #[test]
    fn names_the_version_and_the_way_out() {
        assert_eq!(version_words(170_002), "17.2");
        assert_eq!(version_words(140_011), "14.11");
        let failover = config("failover_slot = true");
        assert!(check(&failover, 170_000).is_ok());
        assert!(check(&failover, 180_001).is_ok());
        let err = check(&failover, 160_004).unwrap_err().to_string();
        assert!(
            err.contains("PostgreSQL 16.4") && err.contains("remove source.failover_slot"),
            "{err}"
        );
        let filters = config("[source.row_filters]\n\"public.orders\" = \"id > 1\"");
        assert!(check(&filters, 150_000).is_ok());
        let err = check(&filters, 140_009).unwrap_err().to_string();
        assert!(
            err.contains("PostgreSQL 14.9") && err.contains("public.orders"),
            "{err}"
        );
        assert!(check(&config(""), 140_000).is_ok());
    }
}
