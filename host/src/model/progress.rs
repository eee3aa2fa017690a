//! A table's snapshot progress: rows and bytes copied against the catalog's estimate, the
//! rate and the time left, as the log, the terminal display and `pgmorph status` show it.

use std::fmt;

use serde::Serialize;

/// How far one table's copy (or the whole snapshot) has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CopyFigures {
    /// Rows copied so far.
    pub rows: u64,
    /// Rows the catalog expects (`reltuples`); `None` when the table was never analyzed.
    pub est_rows: Option<u64>,
    /// Bytes of COPY data read so far.
    pub bytes: u64,
    /// The table's size on disk (`pg_relation_size`), which COPY data roughly follows.
    pub est_bytes: u64,
    /// Seconds spent copying.
    pub seconds: f64,
    /// Whether the copy finished (`rows` is then the exact count).
    pub done: bool,
}

impl CopyFigures {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The part done, from the row estimate, else from the size on disk.
    pub fn fraction(&self) -> Option<f64> {
        if self.done {
            return Some(1.0);
        }
        let part = match self.est_rows {
            Some(est) if est > 0 => self.rows as f64 / est as f64,
            _ if self.est_bytes > 0 => self.bytes as f64 / self.est_bytes as f64,
            _ => return None,
        };
        Some(part.min(0.99))
    }

    /// Seconds left at the current rate.
    pub fn eta(&self) -> Option<f64> {
        let part = self.fraction()?;
        if self.done {
            return Some(0.0);
        }
        (part > 0.0 && self.seconds > 0.0).then(|| self.seconds * (1.0 - part) / part)
    }

    /// Adds another table's figures (for the total).
    pub fn add(&mut self, other: &CopyFigures) {
        self.rows += other.rows;
        self.est_rows = match (self.est_rows, other.est_rows) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        self.bytes += other.bytes;
        self.est_bytes += other.est_bytes;
        self.seconds = self.seconds.max(other.seconds);
        self.done &= other.done;
    }
}

impl fmt::Display for CopyFigures {
    /// `120000/500000 rows (24%), 15.2/64.0 MB, 40000 rows/s, ETA 9 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let est = self.est_rows.map_or("?".to_string(), |e| e.to_string());
        write!(f, "{}/{est} rows", self.rows)?;
        if let Some(part) = self.fraction() {
            write!(f, " ({:.0}%)", part * 100.0)?;
        }
        let mb = |b: u64| b as f64 / 1e6;
        write!(
            f,
            ", {:.1}/{:.1} MB, {:.0} rows/s",
            mb(self.bytes),
            mb(self.est_bytes),
            self.rate()
        )?;
        match (self.done, self.eta()) {
            (true, _) => write!(f, ", done in {:.1} s", self.seconds),
            (false, Some(eta)) => write!(f, ", ETA {eta:.0} s"),
            (false, None) => write!(f, ", ETA ?"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_share_and_time_left_come_from_the_estimate() {
        let f = CopyFigures {
            rows: 250,
            est_rows: Some(1000),
            bytes: 2_000_000,
            est_bytes: 8_000_000,
            seconds: 5.0,
            done: false,
        };
        assert_eq!(f.rate(), 50.0);
        assert_eq!(f.eta(), Some(15.0));
        assert_eq!(
            f.to_string(),
            "250/1000 rows (25%), 2.0/8.0 MB, 50 rows/s, ETA 15 s"
        );
        let unknown = CopyFigures {
            est_rows: None,
            ..f
        };
        assert_eq!(unknown.fraction(), Some(0.25), "falls back on bytes");
        let done = CopyFigures {
            done: true,
            rows: 990,
            ..f
        };
        assert!(done.to_string().starts_with("990/1000 rows (100%)"));
        assert!(done.to_string().ends_with("done in 5.0 s"));
    }

    #[test]
    fn the_total_adds_tables_and_knows_rows_only_when_each_does() {
        let a = CopyFigures {
            rows: 1,
            est_rows: Some(2),
            done: true,
            ..Default::default()
        };
        let mut total = CopyFigures {
            done: true,
            est_rows: Some(0),
            ..Default::default()
        };
        total.add(&a);
        assert_eq!((total.rows, total.est_rows, total.done), (1, Some(2), true));
        total.add(&CopyFigures::default());
        assert_eq!((total.est_rows, total.done), (None, false));
    }
}
