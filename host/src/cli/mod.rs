//! Parts of the `pgmorph` command line that only the binary uses: the demo, plugin commands
//! (and scaffolding new plugins),
//! offsets, the log, building the transform from a config, and the operator commands
//! `validate` and `wait`.

pub mod demo;
mod demo_postgres;
pub mod logging;
pub mod offsets;
pub mod plugin_cli;
pub mod plugin_new;
pub mod snapshot_view;
pub mod source_setup;
pub mod transform_setup;
pub mod validate;
pub mod wait;

/// An operator command found what it checks for unmet (`validate` found an error, `wait`
/// timed out); the binary exits with [`Unmet::EXIT_CODE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unmet(pub String);

impl Unmet {
    /// The exit code: 2.
    pub const EXIT_CODE: u8 = 2;
}
