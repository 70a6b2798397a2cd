//! `plumb_agent::fuzz::sshd_config` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plumb_agent::fuzz::sshd_config(data));
