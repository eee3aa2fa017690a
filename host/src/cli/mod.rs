//! Parts of the `pgmorph` command line that only the binary uses: the demo, plugin commands,
//! offsets, the log, and building the transform from a config.

pub mod demo;
pub mod logging;
pub mod offsets;
pub mod plugin_cli;
pub mod source_setup;
pub mod transform_setup;
