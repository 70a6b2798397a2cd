//! `plumb_agent::fuzz::agent_config` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb_agent::fuzz::agent_config(data));
