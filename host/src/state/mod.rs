//! Connector state kept in the destination database (schema `pgmorph`): the state row that
//! `pgmorph status` shows, per-table phases, counters, and the dead-letter table.

pub mod control;
pub mod ddl_history;
pub mod local;
mod mappings;
pub mod owner;
mod retries;
mod schema;
pub mod sequences;
pub mod snapshot_progress;
mod store;

/// SQL run by the sink inside each applied transaction.
pub(crate) mod store_sql {
    pub(crate) use super::store::{
        DEAD_LETTERED, FORGET_RANGES, LANES_SETTLED, LANE_PROGRESS, PROGRESS, RANGE_COPIED,
        ROWS_COPIED, STATS, TABLE_COPIED,
    };
}

pub use retries::Retries;
pub use schema::STATE_SCHEMA;
pub use store::{
    ConnectorState, CopiedRange, Progress, StateError, StateStore, Status, TableStatus, TableSync,
    TxCounts,
};
