//! TLS on a throwaway cluster: a certificate and key put where the server looks by default, and
//! `ssl = on` by reload.

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use super::{ClusterError, LocalCluster};

/// How long the server may take to pick up `ssl = on` after the reload.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

impl LocalCluster {
    /// Writes `cert_pem` and `key_pem` as `server.crt` and `server.key` in the data directory
    /// (owned by the server's user, mode 0600), turns `ssl` on by reload and waits until new
    /// sessions see it. Whether the server then accepts TLS is for the caller to check with a
    /// TLS connection: a certificate the server cannot load shows only in its log.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) -> Result<(), ClusterError> {
        let dir = self.data_dir();
        let owner = std::fs::metadata(dir)
            .map_err(|e| ClusterError::io(format!("reading {}", dir.display()), e))?;
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = dir.join(name);
            let fail = |e| ClusterError::io(format!("writing {}", path.display()), e);
            std::fs::write(&path, text).map_err(fail)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(fail)?;
            chown(&path, Some(owner.uid()), Some(owner.gid())).map_err(fail)?;
        }
        self.psql(
            "postgres",
            "ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();",
        )?;
        let start = Instant::now();
        while self.psql("postgres", "SHOW ssl")? != "on" {
            if start.elapsed() > RELOAD_WAIT {
                return Err(ClusterError::Start {
                    attempts: 1,
                    log_tail: format!("ssl is still off after the reload\n{}", self.log_tail()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}
