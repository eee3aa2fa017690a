//! The copy of a partitioned table: each leaf partition read on its own (page ranges of big
//! leaves as for any table) into the one destination table, each piece in its own destination
//! transaction. An interrupted copy starts again from an emptied table.

use std::time::Instant;

use super::range_copy::RangeCtx;
use super::{SnapshotError, Streamed, Unit};
use crate::model::{PageRange, RangePolicy, TableName};
use crate::sink::load::Into;
use crate::source::copy_out::RowFilter;
use crate::source::partitions::Leaf;
use crate::source::ranges;

/// The units copying `leaves` (the partitioned table itself, holding no rows, when it has no
/// partition yet), and their pages in all.
pub(super) async fn plan(
    client: &tokio_postgres::Client,
    root: &TableName,
    leaves: Vec<Leaf>,
    splits: bool,
    policy: &RangePolicy,
) -> Result<(u64, Vec<Unit>), tokio_postgres::Error> {
    if leaves.is_empty() {
        return Ok((0, vec![Unit::Leaf(root.clone(), PageRange::WHOLE)]));
    }
    let (mut pages, mut units) = (0, Vec::new());
    for leaf in leaves {
        let size = ranges::table_size(client, leaf.oid).await?;
        pages += size.pages;
        let planned = match splits {
            true => ranges::plan(size, policy),
            false => vec![PageRange::WHOLE],
        };
        units.extend(
            planned
                .into_iter()
                .map(|range| Unit::Leaf(leaf.name.clone(), range)),
        );
    }
    Ok((pages, units))
}

impl RangeCtx<'_> {
    /// Copies one page range of one leaf partition in its own destination transaction, which
    /// also adds its rows to the table's progress.
    pub(super) async fn copy_leaf(
        &self,
        leaf: &TableName,
        range: &PageRange,
    ) -> Result<u64, SnapshotError> {
        let started = self.start().await?;
        let err = self.err();
        self.dest.begin().await.map_err(&err)?;
        let streamed = super::stream_rows(self, Into::Table, RowFilter::leaf(range, leaf)).await?;
        self.commit_leaf(leaf, range, streamed, started).await
    }

    async fn commit_leaf(
        &self,
        leaf: &TableName,
        range: &PageRange,
        streamed: Streamed,
        started: Instant,
    ) -> Result<u64, SnapshotError> {
        let (dest, table) = (self.dest, self.table);
        let err = self.err();
        dest.dead_letters(&table.name, &streamed.dead_letters)
            .await
            .map_err(&err)?;
        dest.record_rows(&table.name, streamed.rows)
            .await
            .map_err(&err)?;
        dest.commit().await.map_err(&err)?;
        tracing::debug!(table = %table.name, %leaf, %range, rows = streamed.rows, "partition copied");
        let dead = streamed.dead_letters.len() as u64;
        self.unit_done(streamed.rows, streamed.skipped, dead, started)
            .await?;
        Ok(streamed.rows)
    }
}
