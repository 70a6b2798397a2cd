//! `plumb baseline lint|sign|verify`.

use crate::cli::BaselineCommand;
use crate::{EXIT_ERROR, EXIT_OK};
use plumb_core::Baseline;

pub fn run(cmd: BaselineCommand) -> anyhow::Result<u8> {
    match cmd {
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
