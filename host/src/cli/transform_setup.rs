//! Chooses the transform for a run: the plugin chain when a plugin directory is set, else identity.

use std::path::Path;

use pgmorph::config::Config;
use pgmorph::plugin::reload::build_transform;
use pgmorph::transform::Transform;

/// Builds the transform from `--plugins` or the config's `plugin_dir`.
pub fn build(config: &Config, plugins: Option<&Path>) -> anyhow::Result<Box<dyn Transform>> {
    Ok(build_transform(config, plugins)?)
}
