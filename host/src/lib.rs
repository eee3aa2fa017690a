//! pgmorph: replicate one PostgreSQL database into another, reshaping tables and rows with
//! WebAssembly plugins on the way.
//!
//! The data path reads top to bottom: [`source`] (catalog, slot, snapshot COPY, replication
//! stream, pgoutput decoding) -> [`model`] values -> [`pipeline`] (snapshot, CDC loop) through
//! the [`transform`] seam (plugins) -> [`sink`] (destination DDL, COPY, transactional apply) with progress in
//! [`state`].

pub mod cluster;
pub mod config;
pub mod copy_text;
pub mod error_chain;
pub mod error_kind;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plugin;
pub mod sink;
pub mod source;
pub mod state;
pub mod transform;
