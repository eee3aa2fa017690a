//! Hostile input never panics and never makes a decoder allocate out of proportion to it:
//! pgoutput messages, COPY text (lines and the line splitter), and the config file. Bounded
//! property tests here; `PGMORPH_FUZZ_CASES=N` runs N cases of each for a longer soak.
//!
//! A counting allocator measures what each decode allocates at its peak.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as StdCell;

use bytes::{Bytes, BytesMut};
use pgmorph::copy_text::{decode_line, encode_row, LineSplitter};
use pgmorph::model::Cell;
use proptest::prelude::*;

/// Counts the bytes allocated on this thread (only while a measurement is on).
struct Counting;

thread_local! {
    static LIVE: StdCell<usize> = const { StdCell::new(0) };
    static PEAK: StdCell<usize> = const { StdCell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the thread-local counters
// only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same layout, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same pointer and layout, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add_signed(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the peak bytes it had allocated beyond what was live before.
fn peak_of(f: impl FnOnce()) -> usize {
    let before = LIVE.with(StdCell::get);
    PEAK.with(|p| p.set(before));
    f();
    PEAK.with(StdCell::get).saturating_sub(before)
}

/// Generous bound: a decoder may copy its input a few times, plus fixed overhead.
fn bound(input: usize) -> usize {
    16 * input + 64 * 1024
}

fn cases() -> u32 {
    std::env::var("PGMORPH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// pgoutput message tags followed by random bytes: the decoder reaches every message kind.
fn pgoutput_message() -> impl Strategy<Value = Vec<u8>> {
    let tag = prop::sample::select(b"BCORYIUDTMbcK".to_vec());
    (tag, prop::collection::vec(any::<u8>(), 0..256)).prop_map(|(t, mut rest)| {
        rest.insert(0, t);
        rest
    })
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        Just(Cell::Null),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|v| Cell::Text(Bytes::from(v))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn pgoutput_decoding_never_panics_nor_overallocates(input in pgoutput_message()) {
        let len = input.len();
        let bytes = Bytes::from(input);
        let peak = peak_of(|| {
            let _ = pgmorph::source::pgoutput::decode(bytes.clone());
        });
        prop_assert!(peak <= bound(len), "{peak} bytes for {len} input bytes");
    }

    #[test]
    fn copy_lines_round_trip_and_junk_never_panics(
        row in prop::collection::vec(cell(), 1..12),
        junk in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut out = BytesMut::new();
        encode_row(&mut out, &row);
        let line = out.freeze();
        let line = line.slice(..line.len() - 1); // without the newline
        let decoded = decode_line(&line, row.len()).expect("an encoded row decodes");
        prop_assert_eq!(decoded, row);
        let junk = Bytes::from(junk);
        let len = junk.len();
        let peak = peak_of(|| {
            let _ = decode_line(&junk, 7);
        });
        prop_assert!(peak <= bound(len), "{peak} bytes for {len} input bytes");
    }

    #[test]
    fn the_line_splitter_gives_the_same_lines_however_the_text_is_cut(
        text in prop::collection::vec(prop::sample::select(b"ab\n\\\t".to_vec()), 0..300),
        cuts in prop::collection::vec(0usize..300, 0..8),
    ) {
        let whole: Vec<Bytes> = text
            .split(|&b| b == b'\n')
            .map(Bytes::copy_from_slice)
            .collect();
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= text.len()).collect();
        cuts.sort();
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([text.len()]) {
            let chunk = Bytes::copy_from_slice(&text[at..cut]);
            splitter.feed(&chunk, |l| { lines.push(l.clone()); Ok::<_, ()>(()) }).unwrap();
            at = cut;
        }
        // The last piece after the final newline stays pending (possibly empty).
        prop_assert_eq!(&lines[..], &whole[..whole.len() - 1]);
        prop_assert_eq!(splitter.has_partial(), !whole[whole.len() - 1].is_empty());
    }

    #[test]
    fn any_config_text_gives_a_config_or_an_error(text in "[a-z_\\[\\]=\" .0-9\n]{0,300}") {
        let _ = pgmorph::config::Config::parse(&text, std::path::Path::new("fuzz.toml"));
    }
}
