//! `moment`: adds two computed columns, `seen_at` (the wall clock when the row hook ran, in
//! microseconds since the Unix epoch) and `dice` (a random 64-bit number in hex), to show what a
//! plugin's clock and random source read. The determinism tests compare them across replays.

use std::time::{SystemTime, UNIX_EPOCH};

use pgmorph_plugin_sdk::{export, Change, Config, Error, Mapping, Plugin, Table, TableSchema, Verdict};

/// The plugin.
pub struct Moment;

impl Plugin for Moment {
    fn init(_config: Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn map_table(&mut self, table: &TableSchema) -> Result<Mapping, Error> {
        let mut mapping = Mapping::from_schema(table);
        mapping.add_column("seen_at", "bigint")?;
        mapping.add_column("dice", "text")?;
        Ok(mapping)
    }

    fn transform_row(&mut self, _table: &Table, change: &mut Change<'_>) -> Result<Verdict, Error> {
        if let Some(new) = change.new.as_mut() {
            let micros = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            new.set_str("seen_at", &micros.to_string())?;
            new.set_str("dice", &format!("{:016x}", random_u64()))?;
        }
        Ok(Verdict::Keep)
    }
}

/// Eight bytes from the WASI random source.
#[cfg(target_arch = "wasm32")]
fn random_u64() -> u64 {
    extern "C" {
        fn getentropy(buf: *mut u8, len: usize) -> i32;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: wasi-libc's getentropy fills `len` bytes of `buf`, which is valid for 8 bytes.
    let rc = unsafe { getentropy(bytes.as_mut_ptr(), bytes.len()) };
    assert_eq!(rc, 0, "getentropy failed");
    u64::from_le_bytes(bytes)
}

/// Natively (unit tests) the plugin has no WASI random source.
#[cfg(not(target_arch = "wasm32"))]
fn random_u64() -> u64 {
    0
}

export!(Moment);
