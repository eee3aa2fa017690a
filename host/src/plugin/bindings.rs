//! The one `bindgen!` of the plugin world `pgmorph:plugin/plugin@0.1.0`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit/pgmorph-plugin-0.1.0",
    world: "plugin",
});

pub(crate) use pgmorph::plugin::types as wit;
