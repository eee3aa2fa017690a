//! COPY text output cut into chunks anywhere: the line splitter gives the same lines as a
//! split of the whole text, each line decodes into cells or a clean error, and a decoded row
//! encodes back into a line that decodes to the same row.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pgmorph::copy_text::{decode_line, encode_row, LineSplitter};

fuzz_target!(|data: &[u8]| {
    let Some((&head, text)) = data.split_first() else {
        return;
    };
    let columns = usize::from(head % 16);
    let cut = usize::from(head).min(text.len());
    let text = Bytes::copy_from_slice(text);
    let mut lines = Vec::new();
    let mut splitter = LineSplitter::default();
    for chunk in [text.slice(..cut), text.slice(cut..)] {
        splitter
            .feed(&chunk, |line| {
                lines.push(line.clone());
                Ok::<(), ()>(())
            })
            .unwrap();
    }
    let whole: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), whole.len() - 1, "complete lines only");
    for (line, expected) in lines.iter().zip(&whole) {
        assert_eq!(&line[..], *expected);
        if let Ok(row) = decode_line(line, columns) {
            let mut out = BytesMut::new();
            encode_row(&mut out, &row);
            let encoded = out.freeze();
            let again = decode_line(&encoded.slice(..encoded.len() - 1), columns).unwrap();
            assert_eq!(again, row, "a decoded row round-trips");
        }
    }
});
