//! `plumb_collector::fuzz::event_batch` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb_collector::fuzz::event_batch(data));
