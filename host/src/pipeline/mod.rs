//! The connector: snapshot, then the CDC loop, with the transform seam in between.
//!
//! Data path: source stream -> pgoutput decode -> [`relations`] (mapping per relation
//! version) -> [`crate::transform`] (plugins) -> sink (one destination transaction per source
//! transaction, progress included) -> acknowledge.

pub mod cdc;
pub mod connector;
mod copier;
pub mod preview;
mod reconnect;
pub mod relations;
pub mod sequences;
pub mod snapshot;
mod start;
mod streaming;
mod worker_plugins;

pub use connector::{run, Mode, ReloadOptions, RunError, RunOptions};
