//! `plumb_agent::fuzz::proc_mounts` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb_agent::fuzz::proc_mounts(data));
