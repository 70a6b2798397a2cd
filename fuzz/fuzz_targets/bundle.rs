//! A signed baseline bundle as the agent receives it from the collector or
//! a file, and a trusted public key file (docs/fuzzing.md): parsing,
//! verification against a trusted key, and the invariants the trust chain
//! relies on.
#![no_main]

use plumb_core::bundle::{Bundle, PublicKey, SigningKey};
use std::sync::OnceLock;

/// One signing key for the whole run; its public half is the trusted key.
fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let generated = SigningKey::generate("fuzz").expect("a fresh Ed25519 key");
        SigningKey::from_pem(&generated.private_pem, "fuzz key").expect("its own PEM")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = key();
    let trusted = [key.public_key().clone()];

    // A trusted key file is hand-written too.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(k) = PublicKey::parse(text, "fuzz.pub") {
            let again = PublicKey::parse(&k.to_text(), "again").expect("a key's own text parses");
            assert_eq!(again.raw(), k.raw());
        }
    }

    match Bundle::parse(data) {
        Ok(b) => {
            // The encoding is canonical: what parses is what is written.
            assert_eq!(
                b.to_bytes(),
                data,
                "a parsed bundle re-encodes to its input"
            );
            // The fuzzer cannot forge the signature: verification must fail
            // unless the input is a bundle this key signed.
            if let Ok(v) = b.verify(&trusted) {
                assert_eq!(v.baseline.id, b.id());
                assert_eq!(v.baseline.version, b.version());
            }
            // The same payload signed with the trusted key: verifies when
            // the baseline lints, and says what it carries.
            if let Ok(signed) = Bundle::sign(b.payload(), "fuzz", key) {
                let reread = Bundle::parse(&signed.to_bytes()).expect("a signed bundle parses");
                let v = reread.verify(&trusted).expect("a signed bundle verifies");
                assert_eq!(v.baseline.id, signed.id());
                assert_eq!(v.baseline.version, signed.version());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
