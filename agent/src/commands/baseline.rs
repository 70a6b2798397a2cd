//! `plumb baseline lint|sign|verify|coverage`.

use crate::cli::{BaselineCommand, CoverageFormat};
use crate::coverage::{FrameworkList, measure};
use crate::output;
use crate::policy::load_baselines;
use crate::trust::load_trusted_keys;
use crate::{EXIT_ERROR, EXIT_OK};
use anyhow::{Context as _, bail};
use plumb_core::Baseline;
use plumb_core::baseline::MAX_BASELINE_BYTES;
use plumb_core::bundle::{Bundle, BundleError, SigningKey};
use plumb_os::atomic::write_atomic;
use std::path::Path;

pub fn run(cmd: BaselineCommand) -> anyhow::Result<u8> {
    match cmd {
        BaselineCommand::Sign { key, file, output } => sign(&key, &file, &output),
        BaselineCommand::Verify { pubkeys, bundle } => verify(&pubkeys, &bundle),
        BaselineCommand::Coverage {
            files,
            framework,
            format,
        } => coverage(&files, &framework, format),
        BaselineCommand::Lint { files } => {
            let mut loaded = Vec::new();
            let mut bad = false;
            for f in &files {
                match Baseline::load(f) {
                    Ok(b) => {
                        println!(
                            "{}: ok: {} v{}, {} rules, {} file watches",
                            f.display(),
                            b.id,
                            b.version,
                            b.rules.len(),
                            b.fim.len()
                        );
                        loaded.push(b);
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        bad = true;
                    }
                }
            }
            if let Err(e) = Baseline::check_unique(&loaded) {
                eprintln!("{e}");
                bad = true;
            }
            Ok(if bad { EXIT_ERROR } else { EXIT_OK })
        }
    }
}

/// `plumb baseline coverage`: a report, not a verdict, so exit 0 whatever
/// the figure; 2 when a baseline does not load.
fn coverage(
    files: &[std::path::PathBuf],
    framework: &str,
    format: CoverageFormat,
) -> anyhow::Result<u8> {
    let baselines = load_baselines(files)?;
    let list = FrameworkList::builtin(framework)?;
    let report = measure(&list, &baselines);
    let mut out = std::io::stdout().lock();
    match format {
        CoverageFormat::Text => output::coverage::write(&mut out, &report)?,
        CoverageFormat::Json => output::json::write(&mut out, &report)?,
    }
    Ok(EXIT_OK)
}

/// `plumb baseline sign`: lint, then sign the exact bytes of the file.
fn sign(key: &Path, file: &Path, output: &Path) -> anyhow::Result<u8> {
    if same_file(file, output) {
        bail!(
            "{}: the bundle would replace the baseline it signs; choose another -o",
            output.display()
        );
    }
    let key = SigningKey::load(key)?;
    let bytes = read_capped(file, MAX_BASELINE_BYTES)?;
    let origin = file.display().to_string();
    let bundle = match Bundle::sign(&bytes, &origin, &key) {
        Ok(b) => b,
        Err(BundleError::InvalidBaseline(e)) => {
            eprintln!("{e}");
            eprintln!("plumb: {origin}: not signed: the baseline is invalid");
            return Ok(EXIT_ERROR);
        }
        Err(e) => return Err(e.into()),
    };
    write_atomic(output, &bundle.to_bytes(), 0o644, true)
        .with_context(|| format!("{}: cannot write bundle", output.display()))?;
    println!(
        "signed: {} v{} with key {} -> {}",
        bundle.id(),
        bundle.version(),
        bundle.key_id(),
        output.display()
    );
    Ok(EXIT_OK)
}

/// `plumb baseline verify`: what an agent checks, minus the version floor.
fn verify(pubkeys: &[std::path::PathBuf], bundle_path: &Path) -> anyhow::Result<u8> {
    let keys = load_trusted_keys(pubkeys)?;
    let shown = bundle_path.display();
    match Bundle::load(bundle_path).and_then(|b| b.verify(&keys)) {
        Ok(v) => {
            println!(
                "ok: {} v{} signed by {}",
                v.baseline.id, v.baseline.version, v.key_id
            );
            Ok(EXIT_OK)
        }
        // Read errors already name the file.
        Err(e @ BundleError::Read { .. }) => Err(e.into()),
        Err(e) => {
            eprintln!("plumb: {shown}: refused: {e}");
            Ok(EXIT_ERROR)
        }
    }
}

/// The baseline to sign, read through the trust rule: whoever could
/// rewrite it decides what gets signed.
fn read_capped(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    Ok(plumb_os::read_trusted(
        path,
        plumb_os::FileKind::Baseline,
        limit,
    )?)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
