//! `plumb_agent::fuzz::dpkg_status` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb_agent::fuzz::dpkg_status(data));
