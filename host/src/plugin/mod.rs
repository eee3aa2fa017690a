//! WebAssembly component plugins: the one `bindgen!`, the sandboxed engine, model <-> WIT
//! conversion, hot reload ([`reload`]), and [`PluginChain`], the
//! [`Transform`](crate::transform::Transform)
//! that runs every `.wasm` of the plugin directory in file-name order.
//!
//! Values cross in PostgreSQL's text form. When a mapping changes a column's type and no row
//! hook converts the value, the text goes to the destination unchanged and the destination casts
//! it to the new column type (the sink inserts text): `numeric -> text`, `json -> jsonb` and
//! `int4 -> int8` need nothing more; a cast that fails there stops the apply.

mod bindings;
mod cache;
mod chain;
mod codec;
mod determinism;
mod engine;
mod instance;
mod layout;
mod offline;
pub mod reload;
mod rows_file;
mod validate;

use std::path::PathBuf;

pub use cache::{
    prune_cache, CacheCaps, Pruned, MAX_BYTES as CACHE_MAX_BYTES, MAX_ENTRIES as CACHE_MAX_ENTRIES,
};
pub use chain::{LoadOptions, PluginChain};
pub use engine::default_cache_dir;
pub use offline::{
    check, check_init, check_with, describe_mapping, run_offline, run_offline_with,
    schema_from_jsonl, OfflineRun, PluginReport,
};
pub use rows_file::{read_rows_table, RowsTable};

/// Default memory cap of one plugin instance.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// Default CPU deadline of one call into a plugin.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// A plugin could not be loaded or set up; the kind tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasmtime engine could not start.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    /// The plugin directory or file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a component of the `pgmorph:plugin/plugin@0.1.0` world.
    #[error("plugin {path} is not a valid pgmorph plugin component: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Settings name a plugin that is not in the directory.
    #[error("[plugins.{0}] is configured but there is no {0}.wasm in the plugin directory")]
    UnknownPlugin(String),
    /// The plugin's `init` failed (usually its config is wrong).
    #[error("plugin {plugin} failed to start: {message}")]
    Init {
        /// The plugin's name.
        plugin: String,
        /// What it reported.
        message: String,
    },
    /// Offline input could not be used.
    #[error("{0}")]
    Input(String),
}
