//! Parts of the `pgmorph` command line that only the binary uses: the demo, plugin commands,
//! offsets, and building the transform from a config.

pub mod demo;
mod demo_postgres;
pub mod offsets;
pub mod plugin_cli;
pub mod source_setup;
pub mod transform_setup;
