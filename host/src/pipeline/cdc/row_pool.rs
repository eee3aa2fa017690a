//! The CDC row step on several plugin instances at once: with `apply.parallel = N`, each of N
//! workers holds its own instances of the chain ([`WorkerPlugins`]: the compiled components
//! are shared, each instance has its own store, memory and time limits) on a thread of its own.
//! A large step is cut into N contiguous parts, each table's batch into N runs of consecutive
//! changes with their provenance, the parts run at once, and the rows they keep are put back
//! in source order, with their dead letters and skipped counts, before anything is applied.
//! A step too small to be worth cutting runs on the shared chain, as with one worker.
//!
//! Each worker makes its instances again when the shared chain's generation moved on (a hot
//! reload, a table mapped), so all instances change between transactions together.

use std::sync::Arc;

use futures_util::future::try_join_all;

use crate::pipeline::worker_plugins::WorkerPlugins;
use crate::transform::{start_row_step, RowStepError, SharedTransform, TableBatch};

/// A part smaller than this is not worth a thread of its own.
const PART_MIN_ROWS: usize = 128;

/// The row step's workers.
pub struct RowPool {
    shared: SharedTransform,
    workers: Vec<WorkerPlugins>,
}

/// One part of a step: for each batch of it, the index of the batch it was cut from.
struct Part {
    from: Vec<usize>,
    batches: Vec<TableBatch>,
}

impl RowPool {
    /// `size` workers over the shared transform (none for a size of 1: every step runs on it).
    pub fn new(shared: SharedTransform, size: usize) -> Self {
        let workers = match size {
            0 | 1 => Vec::new(),
            n => (0..n)
                .map(|w| WorkerPlugins::new("cdc", w, shared.clone()))
                .collect(),
        };
        Self { shared, workers }
    }

    /// Runs the row step over `batches` and returns what it kept, in source order.
    pub async fn run(&mut self, batches: Vec<TableBatch>) -> Result<Vec<TableBatch>, RowStepError> {
        let rows: usize = batches.iter().map(|b| b.changes.len()).sum();
        let parts = (rows / PART_MIN_ROWS).min(self.workers.len());
        let plugged = batches.iter().find(|b| b.mapping.transforms_rows);
        let (Some(mapping), true) = (plugged.map(|b| b.mapping.clone()), parts > 1) else {
            return start_row_step(&self.shared, batches).finish().await;
        };
        let mut transforms = Vec::with_capacity(parts);
        for worker in &mut self.workers[..parts] {
            transforms.push(worker.for_unit(&mapping).await?);
        }
        if transforms.iter().any(|t| Arc::ptr_eq(t, &self.shared)) {
            // The transform cannot be copied: its instances are the shared ones.
            return start_row_step(&self.shared, batches).finish().await;
        }
        let (mut whole, cut) = cut(batches, parts);
        let from: Vec<Vec<usize>> = cut.iter().map(|p| p.from.clone()).collect();
        let steps = cut
            .into_iter()
            .zip(&transforms)
            .map(|(part, t)| start_row_step(t, part.batches).finish());
        for (done, from) in try_join_all(steps).await?.into_iter().zip(from) {
            for (batch, b) in done.into_iter().zip(from) {
                let into = &mut whole[b];
                into.changes.extend(batch.changes);
                into.outcome.skipped += batch.outcome.skipped;
                into.outcome.dead_letters.extend(batch.outcome.dead_letters);
            }
        }
        Ok(whole)
    }
}

/// Cuts each batch into at most `parts` runs of consecutive changes, the first run in the first
/// part; returns the batches emptied (to put the kept changes back into) and the parts.
fn cut(batches: Vec<TableBatch>, parts: usize) -> (Vec<TableBatch>, Vec<Part>) {
    let mut out: Vec<Part> = (0..parts)
        .map(|_| Part {
            from: Vec::new(),
            batches: Vec::new(),
        })
        .collect();
    let mut whole = Vec::with_capacity(batches.len());
    for (b, mut batch) in batches.into_iter().enumerate() {
        let run = batch.changes.len().div_ceil(parts).max(1);
        let mut changes = std::mem::take(&mut batch.changes);
        let mut offset = 0;
        for part in out.iter_mut() {
            if changes.is_empty() {
                break;
            }
            let rest = changes.split_off(run.min(changes.len()));
            let at = batch
                .provenance
                .at_row(batch.provenance.row + offset as u64);
            part.from.push(b);
            part.batches
                .push(TableBatch::new(batch.mapping.clone(), changes).at(at));
            offset += run;
            changes = rest;
        }
        whole.push(batch);
    }
    (whole, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Cell, Op, Provenance, ReplicaIdentity, RowChange, TableMapping, TableName, TableSchema,
    };

    fn batch(name: &str, rows: usize, first: u64) -> TableBatch {
        let schema = Arc::new(TableSchema {
            oid: 1,
            name: TableName::new("public", name),
            columns: Vec::new(),
            identity: ReplicaIdentity::Default,
            has_primary_key: false,
        });
        let changes = (0..rows)
            .map(|i| RowChange {
                op: Op::Insert,
                old: None,
                new: Some(vec![Cell::text(i.to_string())]),
            })
            .collect();
        let at = Provenance::transaction(7, 0).at_row(first);
        TableBatch::new(Arc::new(TableMapping::identity(schema, "d")), changes).at(at)
    }

    #[test]
    fn parts_hold_consecutive_runs_with_their_positions() {
        let (whole, parts) = cut(vec![batch("a", 10, 5), batch("b", 1, 15)], 3);
        assert_eq!(whole.len(), 2);
        assert!(whole.iter().all(|b| b.changes.is_empty()));
        let sizes: Vec<Vec<usize>> = parts
            .iter()
            .map(|p| p.batches.iter().map(|b| b.changes.len()).collect())
            .collect();
        assert_eq!(sizes, vec![vec![4, 1], vec![4], vec![2]]);
        assert_eq!(parts[0].from, vec![0, 1]);
        let rows: Vec<u64> = parts.iter().map(|p| p.batches[0].provenance.row).collect();
        assert_eq!(rows, vec![5, 9, 13]);
        assert_eq!(
            parts[1].batches[0].changes[0].new.as_ref().unwrap()[0],
            Cell::text("4")
        );
    }
}
