//! `stamp`: adds a computed text column (`stamped_by`) holding the plugin's version, `v1`.
//! Used by the hot-reload tests with `stamp-v2` to see which version handled each row.

const VERSION: &str = "v1";

include!("plugin.rs");
