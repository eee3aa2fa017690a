//! The pgmorph plugin SDK: write a table and row transform in Rust, build it for
//! `wasm32-wasip2`, drop the `.wasm` into pgmorph's plugin directory.
//!
//! ```ignore
//! use pgmorph_plugin_sdk::{export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict};
//!
//! struct Upper;
//!
//! impl Plugin for Upper {
//!     fn init(_config: Config) -> Result<Self, Error> {
//!         Ok(Upper)
//!     }
//!
//!     fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
//!         let mut mapping = Mapping::from_schema(table);
//!         if table.column("name").is_some() {
//!             mapping.want_rows(["name"])?;
//!         }
//!         Ok(mapping)
//!     }
//!
//!     fn transform_row(&mut self, _table: &Table, change: &mut Change) -> Result<Verdict, Error> {
//!         if let Some(row) = change.new.as_mut() {
//!             if let Some(name) = row.get_str("name")? {
//!                 let upper = name.to_uppercase();
//!                 row.set_str("name", &upper)?;
//!             }
//!         }
//!         Ok(Verdict::Keep)
//!     }
//! }
//!
//! export!(Upper);
//! ```
//!
//! Every method of [`Plugin`] except `init` defaults to pass-through. Test a plugin natively with
//! [`testing::TestHost`] and a plain `cargo test`.

extern crate self as pgmorph_plugin_sdk;

mod codec;
mod config;
mod error;
mod panic_line;
mod row;
#[doc(hidden)]
pub mod runtime;
mod schema;
pub mod testing;

pub use config::Config;
pub use error::Error;
pub use row::{Change, Op, Row, Verdict};
pub use schema::{Column, ColumnSource, MappedColumn, Mapping, Table, TableSchema, TypeClass};

/// The generated WIT bindings; not part of the SDK's API.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/pgmorph-plugin-0.1.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "pgmorph_plugin_sdk::bindings",
        runtime_path: "pgmorph_plugin_sdk::__private::wit_bindgen::rt",
    });
}

/// Re-exports used by the macros; not part of the SDK's API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// A pgmorph plugin: reshapes tables and, if asked, rows.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its configuration (the `[plugins.<name>.config]` table of the
    /// connector config, as JSON). Called again after the host recovers from a trap.
    fn init(config: Config) -> Result<Self, Error>;

    /// Decides where a table lands and whether the plugin sees its rows. The default keeps the
    /// table as it is and asks for no rows (so the plugin costs nothing per row).
    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        Ok(Mapping::from_schema(table))
    }

    /// Transforms one change of a table whose mapping asked for rows. Only the columns named in
    /// [`Mapping::want_rows`] are present. Returning an error hands the change to the plugin's
    /// `on_error` policy. The default keeps the change as it is.
    fn transform_row(&mut self, table: &Table, change: &mut Change<'_>) -> Result<Verdict, Error> {
        let _ = (table, change);
        Ok(Verdict::Keep)
    }
}

/// Log levels of [`log()`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Diagnostic.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a line to pgmorph's log (natively: to stderr, and to [`testing::TestHost::logs`]).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use bindings::pgmorph::plugin::types::Level as L;
        let level = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        bindings::pgmorph::plugin::host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::capture_log(level, message);
}

/// Logs at info level: `info!("renamed {} columns", n)`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::Level::Error, &::std::format!($($arg)+)) };
}

/// Logs at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)+)) };
}

/// Exports a [`Plugin`] type as the component's `transform` interface: `export!(MyPlugin);`.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        struct __PgmorphExport;

        impl $crate::bindings::exports::pgmorph::plugin::transform::Guest for __PgmorphExport {
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<(), $crate::bindings::pgmorph::plugin::types::PluginError>
            {
                $crate::runtime::guest_init::<$plugin>(config)
            }

            fn map_table(
                table: u32,
                schema: $crate::bindings::pgmorph::plugin::types::TableSchema,
            ) -> ::std::result::Result<
                $crate::bindings::pgmorph::plugin::types::TableMapping,
                $crate::bindings::pgmorph::plugin::types::PluginError,
            > {
                $crate::runtime::guest_map_table::<$plugin>(table, schema)
            }

            fn transform_rows(
                table: u32,
                batch: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<
                ::std::vec::Vec<u8>,
                $crate::bindings::pgmorph::plugin::types::PluginError,
            > {
                $crate::runtime::guest_transform_rows::<$plugin>(table, batch)
            }
        }

        // Only components export symbols: WIT export names do not link into native libraries.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_world!(__PgmorphExport with_types_in $crate::bindings);
    };
}
