//! Chooses the transform for a run: the plugin chain when a plugin directory is set, else identity.

use std::path::Path;

use anyhow::Context;
use pgmorph::config::Config;
use pgmorph::pipeline::transform::{Identity, Transform};
use pgmorph::plugin::PluginChain;

/// Builds the transform from `--plugins` or the config's `plugin_dir`.
pub fn build(config: &Config, plugins: Option<&Path>) -> anyhow::Result<Box<dyn Transform>> {
    match plugins.or(config.plugin_dir.as_deref()) {
        None => {
            if let Some(stem) = config.plugins.keys().next() {
                anyhow::bail!(
                    "[plugins.{stem}] is configured but no plugin directory is set (plugin_dir or --plugins)"
                );
            }
            Ok(Box::new(Identity))
        }
        Some(dir) => {
            let chain = PluginChain::load(dir, &config.plugins)
                .with_context(|| format!("loading plugins from {}", dir.display()))?;
            tracing::info!(plugins = ?chain.names(), "plugin chain ready");
            Ok(Box::new(chain))
        }
    }
}
