//! `plumb_collector::fuzz::collector_config` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb_collector::fuzz::collector_config(data));
