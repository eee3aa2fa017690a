//! Options for starting a [`super::LocalCluster`].

/// How a throwaway cluster should be configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Enable logical decoding (`wal_level = logical`, replication slots and WAL senders).
    pub logical: bool,
    /// Require this password (SCRAM-SHA-256) for TCP connections as `postgres`.
    /// Unix-socket connections (used by [`super::LocalCluster::psql`]) stay trusted.
    pub password: Option<String>,
    /// Keep crash-safety settings; when `false`, `fsync`, `synchronous_commit`
    /// and `full_page_writes` are turned off for speed.
    pub durable: bool,
    /// Extra `postgresql.conf` settings, appended last. Values are written
    /// single-quoted (already-quoted values are kept as they are).
    pub settings: Vec<(String, String)>,
}

impl ClusterOptions {
    /// Options for a replication source: logical decoding enabled.
    pub fn source() -> Self {
        ClusterOptions {
            logical: true,
            ..Self::default()
        }
    }

    /// Options for a replication destination: the defaults.
    pub fn destination() -> Self {
        Self::default()
    }

    /// Adds an extra `postgresql.conf` setting (builder style).
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Sets the password for TCP connections (builder style).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
}
