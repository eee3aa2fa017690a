//! The destination side: DDL for mapped tables, COPY in, and transactional apply with the
//! progress row in the same transaction.

pub mod apply;
pub mod ddl;
pub mod indexes;
mod params;
mod statements;
mod writer;

pub use apply::{ApplyError, Sink};
