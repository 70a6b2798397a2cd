//! `plumb keygen -o KEY`: the security team's baseline signing key.

use crate::EXIT_OK;
use crate::cli::KeygenArgs;
use anyhow::{Context as _, bail};
use plumb_core::bundle::SigningKey;
use plumb_os::atomic::write_atomic;
use std::path::PathBuf;

/// `KEY.pub` beside `KEY` (appended, so `signing.key` gives `signing.key.pub`).
pub fn public_path(key: &std::path::Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Writes KEY (PKCS#8 PEM, mode 0600, never overwritten without `--force`)
/// and KEY.pub; prints the key id on stdout.
pub fn run(args: &KeygenArgs) -> anyhow::Result<u8> {
    let key_path = &args.output;
    let pub_path = public_path(key_path);
    if !args.force {
        for p in [key_path, &pub_path] {
            // symlink_metadata: a dangling symlink also counts as "exists".
            if p.symlink_metadata().is_ok() {
                bail!("{} already exists; use --force to replace it", p.display());
            }
        }
    }
    let generated = SigningKey::generate(&args.comment)?;
    write_atomic(
        key_path,
        generated.private_pem.as_bytes(),
        0o600,
        args.force,
    )
    .with_context(|| format!("{}: cannot write private key", key_path.display()))?;
    write_atomic(
        &pub_path,
        generated.public.to_text().as_bytes(),
        0o644,
        args.force,
    )
    .with_context(|| format!("{}: cannot write public key", pub_path.display()))?;
    println!("{}", generated.public.key_id());
    eprintln!(
        "plumb: wrote private key {} (mode 0600: keep it offline) and public key {}",
        key_path.display(),
        pub_path.display()
    );
    Ok(EXIT_OK)
}
