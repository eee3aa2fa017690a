//! `stamp-v2`: the same plugin as `stamp`, stamping `v2`.

const VERSION: &str = "v2";

include!("../../stamp/src/plugin.rs");
