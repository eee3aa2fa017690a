//! The source side: catalog, publication and slot, the exported snapshot's COPY, the
//! replication stream and pgoutput decoding.

pub mod catalog;
pub mod copy_out;
pub mod ddl_event;
pub mod ddl_trigger;
pub mod estimates;
pub mod indexes;
pub mod partitions;
pub mod pgoutput;
pub mod preflight;
pub mod publication;
pub mod ranges;
pub mod sequences;
pub mod setup;
pub mod stream;
pub mod versions;
