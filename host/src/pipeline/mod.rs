//! The connector: snapshot, then the CDC loop, with the transform seam in between.
//!
//! Data path: source stream -> pgoutput decode -> [`relations`] (mapping per relation
//! version) -> [`transform`] (plugins) -> sink (one destination transaction per source
//! transaction, progress included) -> acknowledge.

mod align;
pub mod apply;
pub mod connector;
pub mod preview;
pub mod relations;
pub mod reload;
pub mod snapshot;
pub mod transform;

pub use connector::{run, Mode, ReloadOptions, RunError, RunOptions};
