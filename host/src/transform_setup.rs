//! Chooses the transform for a run: the plugin chain when a plugin directory is set, else identity.

use std::path::Path;

use pgmorph::config::Config;
use pgmorph::pipeline::transform::{Identity, Transform};

/// Builds the transform from `--plugins` or the config's `plugin_dir`.
pub fn build(config: &Config, plugins: Option<&Path>) -> anyhow::Result<Box<dyn Transform>> {
    let dir = plugins.or(config.plugin_dir.as_deref());
    match dir {
        None => Ok(Box::new(Identity)),
        Some(dir) => anyhow::bail!(
            "plugin directory {} given, but this build has no plugin host",
            dir.display()
        ),
    }
}
