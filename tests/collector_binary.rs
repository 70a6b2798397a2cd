//! Not a test of its own: its presence makes `cargo test` build the
//! `plumb-collector` binary, which the end-to-end suite (tests/tests.rs, in
//! plumb-agent) runs. It checks only that the binary is there.

fn main() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_plumb-collector"));
    assert!(bin.is_file(), "{} was not built", bin.display());
}
