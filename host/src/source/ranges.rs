//! Splitting a big table into page ranges that several snapshot readers copy at once.
//!
//! A range is a span of heap pages read with `WHERE ctid >= '(a,0)' AND ctid < '(b,0)'`, which
//! PostgreSQL 14 and later run as a TID Range Scan (only those pages are read). The split is
//! planned from the table's size on disk; the last range has no upper bound, so rows on pages
//! beyond the estimate are still copied.

use tokio_postgres::Client;

use crate::model::{PageRange, RangePolicy};

/// A table's size on the source, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSize {
    /// Heap pages (`pg_relation_size / block_size`).
    pub pages: u64,
    /// The server's page size in bytes.
    pub block_size: u64,
}

impl TableSize {
    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages * self.block_size
    }
}

/// Whether the source runs TID range scans (PostgreSQL 14 and later); older servers would scan
/// the whole table for every range, so their tables are copied whole.
pub async fn supports_ranges(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let version: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await?
        .get(0);
    Ok(version.parse::<u32>().unwrap_or(0) >= 140_000)
}

/// The table's current size on the source.
pub async fn table_size(client: &Client, oid: u32) -> Result<TableSize, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_relation_size($1::oid), current_setting('block_size')::int8",
            &[&oid],
        )
        .await?;
    let bytes: i64 = row.get(0);
    let block_size: i64 = row.get(1);
    let block_size = block_size.max(1) as u64;
    Ok(TableSize {
        pages: bytes.max(0) as u64 / block_size,
        block_size,
    })
}

/// Splits a table of `size` into ranges of about equal page counts: the whole table when it
/// is small (at most `min_table_bytes`, a single page, or one worker), else
/// `max(parallel, ceil(bytes / max_range_bytes))` ranges. The first range is open below and
/// the last open above.
pub fn plan(size: TableSize, policy: &RangePolicy) -> Vec<PageRange> {
    let bytes = size.bytes();
    if policy.parallel < 2 || size.pages < 2 || bytes <= policy.min_table_bytes {
        return vec![PageRange::WHOLE];
    }
    let by_size = bytes.div_ceil(policy.max_range_bytes.max(1));
    let count = by_size.max(policy.parallel as u64).min(size.pages);
    let bound = |i: u64| size.pages * i / count;
    (0..count)
        .map(|i| PageRange {
            start: (i > 0).then(|| bound(i)),
            end: (i + 1 < count).then(|| bound(i + 1)),
        })
        .collect()
}

/// The pages not covered by `done`: the ranges a resumed copy still has to read. The last gap
/// is open above (rows on pages added since are read too).
pub fn gaps(done: &[PageRange]) -> Vec<PageRange> {
    let mut spans: Vec<(u64, Option<u64>)> =
        done.iter().map(|r| (r.start.unwrap_or(0), r.end)).collect();
    spans.sort_by_key(|(start, _)| *start);
    let mut out = Vec::new();
    let mut at = 0u64;
    for (start, end) in spans {
        if start > at {
            out.push(PageRange {
                start: (at > 0).then_some(at),
                end: Some(start),
            });
        }
        match end {
            None => return out,
            Some(end) => at = at.max(end),
        }
    }
    out.push(PageRange {
        start: (at > 0).then_some(at),
        end: None,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn policy(parallel: usize, min_mb: u64, max_mb: u64) -> RangePolicy {
        RangePolicy {
            parallel,
            min_table_bytes: min_mb * MB,
            max_range_bytes: max_mb * MB,
        }
    }

    fn size(mb: u64) -> TableSize {
        TableSize {
            pages: mb * MB / 8192,
            block_size: 8192,
        }
    }

    #[test]
    fn small_tables_and_one_worker_copy_whole() {
        assert_eq!(plan(size(64), &policy(4, 64, 1024)), vec![PageRange::WHOLE]);
        assert_eq!(
            plan(size(4096), &policy(1, 64, 1024)),
            vec![PageRange::WHOLE]
        );
        let one_page = TableSize {
            pages: 1,
            block_size: 8192,
        };
        assert_eq!(plan(one_page, &policy(4, 0, 1024)), vec![PageRange::WHOLE]);
        assert!(PageRange::WHOLE.predicate().is_empty());
    }

    #[test]
    fn ranges_cover_every_page_and_the_last_is_open() {
        let ranges = plan(size(100), &policy(3, 64, 1024));
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].start, None);
        assert_eq!(ranges[2].end, None);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{ranges:?}");
        }
        assert_eq!(ranges[0].predicate(), "ctid < '(4266,0)'::tid");
        assert_eq!(
            ranges[1].predicate(),
            "ctid >= '(4266,0)'::tid AND ctid < '(8533,0)'::tid"
        );
        assert_eq!(ranges[2].predicate(), "ctid >= '(8533,0)'::tid");
        assert_eq!(ranges[2].to_string(), "pages 8533..");
    }

    #[test]
    fn gaps_are_the_pages_no_done_range_covers() {
        let r = |start: Option<u64>, end: Option<u64>| PageRange { start, end };
        // Nothing done: the whole table.
        assert_eq!(gaps(&[]), vec![PageRange::WHOLE]);
        // The first and third of four done: the second and the open tail remain.
        assert_eq!(
            gaps(&[r(Some(20), Some(30)), r(None, Some(10))]),
            vec![r(Some(10), Some(20)), r(Some(30), None)]
        );
        // The open last range done: only the hole before it.
        assert_eq!(
            gaps(&[r(None, Some(10)), r(Some(20), None)]),
            vec![r(Some(10), Some(20))]
        );
        // Everything done: nothing left.
        assert!(gaps(&[r(None, Some(10)), r(Some(10), None)]).is_empty());
    }

    #[test]
    fn big_tables_get_ranges_of_at_most_the_maximum() {
        assert_eq!(plan(size(5000), &policy(2, 64, 1024)).len(), 5);
        // Never more ranges than pages.
        let tiny = TableSize {
            pages: 3,
            block_size: 8192,
        };
        assert_eq!(plan(tiny, &policy(8, 0, 1)).len(), 3);
    }
}
