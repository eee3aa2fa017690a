//! Checking that the destination holds exactly the source's rows: row count plus an
//! order-independent checksum (md5 over the sorted md5s of every row's text form).

use std::fmt;

use anyhow::Result;
use tokio_postgres::Client;

use crate::workload::TABLES;

/// What to compare for one table.
#[derive(Debug, Clone)]
pub struct TableCheck {
    /// Schema-qualified table, the same on both sides.
    pub table: String,
    /// Columns to checksum; `None` = the whole row. A plugin that changes some columns gets
    /// a list of the columns it leaves alone.
    pub columns: Option<Vec<String>>,
}

/// Full-row checks of every replicated table.
pub fn full_checks() -> Vec<TableCheck> {
    TABLES
        .iter()
        .map(|t| TableCheck {
            table: (*t).to_owned(),
            columns: None,
        })
        .collect()
}

/// The destination differs from the source. Never skipped: the benchmark stops.
#[derive(Debug)]
pub struct Mismatch(pub String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DESTINATION DIFFERS FROM SOURCE: {}", self.0)
    }
}

impl std::error::Error for Mismatch {}

/// `(row count, checksum)` of a table.
async fn digest(client: &Client, check: &TableCheck) -> Result<(i64, String)> {
    let row = match &check.columns {
        None => "t".to_owned(),
        Some(cols) => format!("ROW({})", cols.join(", ")),
    };
    let sql = format!(
        "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') \
         FROM (SELECT md5(({row})::text) AS h FROM {} t) s",
        check.table
    );
    let result = client.query_one(&sql, &[]).await?;
    Ok((result.get(0), result.get(1)))
}

/// [`compare`], tried again for up to `patience` while the tables differ: with parallel apply
/// the connections commit one group each on their own, and a reader may see one's part before
/// another's. Says so when the first comparison did not match.
pub async fn compare_settled(
    src: &Client,
    dst: &Client,
    checks: &[TableCheck],
    phase: &str,
    patience: std::time::Duration,
) -> Result<()> {
    let started = std::time::Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        match compare(src, dst, checks, phase).await {
            Ok(()) => {
                if tries > 1 {
                    println!(
                        "  (destination equal after {tries} comparisons, {} ms, after {phase})",
                        started.elapsed().as_millis()
                    );
                }
                return Ok(());
            }
            Err(e) if started.elapsed() >= patience => return Err(e),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// Compares every table; fails with [`Mismatch`] naming each differing table.
pub async fn compare(src: &Client, dst: &Client, checks: &[TableCheck], phase: &str) -> Result<()> {
    let mut problems = Vec::new();
    for check in checks {
        let (source, dest) = tokio::join!(digest(src, check), digest(dst, check));
        let (source, dest) = (source?, dest?);
        if source != dest {
            problems.push(format!(
                "{} after {phase}: source {} rows / {}, destination {} rows / {}",
                check.table, source.0, source.1, dest.0, dest.1
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Mismatch(problems.join("; ")).into())
    }
}
