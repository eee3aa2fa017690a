//! The pgoutput decoder on any XLogData payload: a message or a clean error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pgmorph::source::pgoutput::decode(bytes::Bytes::copy_from_slice(data));
});
