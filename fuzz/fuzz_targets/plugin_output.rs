//! What a hostile plugin can hand back to the host: its verdicts on a batch (and a batch in
//! the same wire format) decode into rows or a clean error, and every text cell lies inside
//! the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmorph_wire::{decode_batch, decode_verdicts, CellRef, CellSpan};

fuzz_target!(|data: &[u8]| {
    let [count, width, buf @ ..] = data else {
        return;
    };
    let (count, width) = (usize::from(*count) * 4, usize::from(*width % 64));
    let touch = |span: CellSpan| match span.get(buf) {
        CellRef::Text(text) => text.len(),
        CellRef::Null | CellRef::Unchanged => 0,
    };
    let _ = decode_verdicts(buf, count, width, touch);
    let _ = decode_batch(buf, width, touch, |op, old, new| (op, old, new));
});
