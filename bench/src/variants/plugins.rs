//! Plugin directories and settings for the plugin variants (d) and (e).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::VariantKind;
use crate::pair::Pair;
use crate::verify::{self, Mismatch, TableCheck};

/// `public.mixed` columns the chain leaves alone (it renames `ext_ref`, converts
/// `created_at` to `timestamp` and hashes `name`).
const CHAIN_UNTOUCHED: &[&str] = &["id", "amount", "payload", "active", "tags"];

/// A plugin variant: which components to install under which names, and their settings.
pub struct PluginSet {
    /// `(plugin crate name, file stem in the plugin directory)`, in chain order.
    pub files: &'static [(&'static str, &'static str)],
    /// TOML appended to the connector config (`[plugins.<stem>.config]` tables).
    pub toml: &'static str,
}

/// The plugin set of a variant (`None` for variants without plugins).
pub fn set_for(kind: VariantKind) -> Option<PluginSet> {
    match kind {
        VariantKind::PgmorphPassthrough => Some(PluginSet {
            files: &[("passthrough", "passthrough")],
            toml: "[plugins.passthrough.config]\nrows = true\n",
        }),
        VariantKind::PgmorphChain => Some(PluginSet {
            files: &[
                ("rename", "10-rename"),
                ("type-remap", "20-type-remap"),
                ("mask", "30-mask"),
            ],
            toml: "[plugins.10-rename.config]\n\
                   columns = { \"public.mixed.ext_ref\" = \"external_ref\" }\n\
                   [plugins.20-type-remap.config]\n\
                   columns = { \"public.mixed.created_at\" = \"timestamp\" }\n\
                   [plugins.30-mask.config]\n\
                   salt = \"pgmorph-bench\"\n\
                   hash = [\"public.mixed.name\"]\n",
        }),
        _ => None,
    }
}

/// The comparisons that still hold with the variant's plugins.
pub fn checks_for(kind: VariantKind) -> Vec<TableCheck> {
    let mut checks = verify::full_checks();
    if kind == VariantKind::PgmorphChain {
        for check in &mut checks {
            if check.table == "public.mixed" {
                check.columns = Some(CHAIN_UNTOUCHED.iter().map(|c| (*c).to_owned()).collect());
            }
        }
    }
    checks
}

/// The built component of `plugin` in `dir`: `pgmorph_plugin_<name>.wasm` (cargo's output
/// name) or `<name>.wasm`.
pub fn find(dir: &Path, plugin: &str) -> Option<PathBuf> {
    [
        format!("pgmorph_plugin_{}.wasm", plugin.replace('-', "_")),
        format!("{plugin}.wasm"),
    ]
    .into_iter()
    .map(|name| dir.join(name))
    .find(|path| path.is_file())
}

/// Fails unless every component of the set is in `dir`.
pub fn check_available(set: &PluginSet, dir: &Path) -> Result<()> {
    let missing: Vec<&str> = set
        .files
        .iter()
        .filter(|(plugin, _)| find(dir, plugin).is_none())
        .map(|(plugin, _)| *plugin)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} has no built plugin(s) {}",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Copies the set's components into `target` under their chain names.
pub fn install(set: &PluginSet, from: &Path, target: &Path) -> Result<()> {
    std::fs::create_dir_all(target)?;
    for (plugin, stem) in set.files {
        let source = find(from, plugin)
            .with_context(|| format!("plugin {plugin} not found in {}", from.display()))?;
        std::fs::copy(&source, target.join(format!("{stem}.wasm")))
            .with_context(|| format!("copying {}", source.display()))?;
    }
    Ok(())
}

/// Fails with [`Mismatch`] unless the destination's `public.mixed` shows all three plugins
/// at work: `ext_ref` renamed, `created_at` a `timestamp`, `name` hashed.
pub async fn check_chain_applied(pair: &Pair) -> Result<()> {
    let columns: Vec<(String, String)> = pair
        .dst
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'mixed'",
            &[],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let has = |name: &str, ty: Option<&str>| {
        columns
            .iter()
            .any(|(n, t)| n == name && ty.is_none_or(|ty| t == ty))
    };
    let source_name: String = pair
        .src
        .query_one("SELECT name FROM public.mixed WHERE id = 1", &[])
        .await?
        .get(0);
    let dest_name: String = pair
        .dst
        .query_one("SELECT name FROM public.mixed WHERE id = 1", &[])
        .await?
        .get(0);
    let mut problems = Vec::new();
    if !has("external_ref", None) || has("ext_ref", None) {
        problems.push("column ext_ref was not renamed to external_ref");
    }
    if !has("created_at", Some("timestamp without time zone")) {
        problems.push("created_at is not a timestamp");
    }
    if dest_name == source_name {
        problems.push("name was not masked");
    }
    if !problems.is_empty() {
        return Err(Mismatch(format!(
            "the plugin chain had no effect: {}",
            problems.join(", ")
        ))
        .into());
    }
    Ok(())
}
