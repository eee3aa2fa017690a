//! The destination side: DDL for mapped tables, COPY in, and transactional apply with the
//! progress row in the same transaction.

pub mod align;
pub mod apply;
mod copy_rows;
pub mod ddl;
mod dead_letters;
mod durability;
mod error;
pub mod in_progress;
pub mod indexes;
pub mod lanes;
pub mod load;
mod params;
pub mod preflight;
mod refusals;
pub mod schema_change;
pub mod sequences;
mod statements;
mod writer;

pub use apply::Sink;
pub use error::ApplyError;
pub use lanes::Lanes;
pub use refusals::Refusal;
