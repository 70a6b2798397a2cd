//! `plumb fim init|check`.

use crate::cli::{FimCheckArgs, FimCommand, FimFormat, FimInitArgs, FimVerify};
use crate::fim::{self, Options, Verify, db};
use crate::{EXIT_DRIFT, EXIT_ERROR, EXIT_OK, output};
use anyhow::bail;
use plumb_core::Baseline;
use plumb_core::fim::{ChangeKind, FimReport};
use plumb_core::printable;
use serde_json::Value;
use std::io::{IsTerminal, Write};

pub fn run(cmd: FimCommand) -> anyhow::Result<u8> {
    match cmd {
        FimCommand::Init(a) => init(&a),
        FimCommand::Check(a) => check(&a),
    }
}

fn load(a: &FimInitArgs) -> anyhow::Result<(Baseline, Options)> {
    let b = Baseline::load(&a.baseline)?;
    if b.fim.is_empty() {
        bail!(
            "{}: the baseline has no [[fim]] watch",
            a.baseline.display()
        );
    }
    let opts = Options {
        root: a.root.clone(),
        db: a.db.clone(),
        key: a.key.clone().unwrap_or_else(|| db::default_key_path(&a.db)),
    };
    Ok((b, opts))
}

fn init(a: &FimInitArgs) -> anyhow::Result<u8> {
    let (b, opts) = load(a)?;
    let s = fim::init(&b.fim, &opts, std::io::stderr().is_terminal())?;
    if s.key_created {
        eprintln!(
            "plumb: fim: created key {} (keep it; the database cannot be verified without it)",
            opts.key.display()
        );
    }
    for e in &s.errors {
        eprintln!("plumb: fim: {}: {}", e.path.display(), printable(&e.error));
    }
    for u in &s.unstable {
        eprintln!(
            "plumb: fim: {}: changed while being hashed; recorded as unstable",
            u.display()
        );
    }
    println!(
        "plumb fim init: {} entries recorded in {} ({} errors, {} unstable); db_digest {}",
        s.entries,
        opts.db.display(),
        s.errors.len(),
        s.unstable.len(),
        s.digest
    );
    Ok(EXIT_OK)
}

/// Exit code of a report: tampering is worse than drift (the comparison
/// cannot be trusted) and exits 2; changes, per-file errors and unstable
/// files exit 1 (nothing proves they hold); otherwise 0.
pub fn exit_code(r: &FimReport) -> u8 {
    if !r.tamper.is_empty() {
        EXIT_ERROR
    } else if !r.changes.is_empty() || !r.errors.is_empty() || !r.unstable.is_empty() {
        EXIT_DRIFT
    } else {
        EXIT_OK
    }
}

fn check(a: &FimCheckArgs) -> anyhow::Result<u8> {
    let (b, opts) = load(&a.common)?;
    let verify = match a.verify {
        FimVerify::Full => Verify::Full,
        FimVerify::Metadata => Verify::Metadata,
    };
    let checked = fim::check(
        &b.fim,
        &opts,
        verify,
        a.update,
        std::io::stderr().is_terminal(),
    )?;
    let code = exit_code(&checked.report);
    {
        let mut out = std::io::stdout().lock();
        match a.format {
            FimFormat::Json => output::json::write(&mut out, &checked.report)?,
            FimFormat::Text => write_text(&mut out, &checked.report)?,
        }
        out.flush()?;
    }
    checked.commit()?;
    Ok(code)
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() == 64 || s.len() == 128 => format!("{}…", &s[..12]),
        // A symlink target or an owner name: whatever the file system holds.
        Value::String(s) => printable(s).into_owned(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One line per change with its fields (old → new), then a summary. Paths,
/// values and messages go through [`printable`] (`ReportPath::display` does
/// for paths): a file name cannot forge a line.
pub fn write_text<W: Write>(out: &mut W, r: &FimReport) -> std::io::Result<()> {
    writeln!(
        out,
        "plumb fim check: root {}, verify {}",
        printable(&r.root),
        r.verify
    )?;
    for t in &r.tamper {
        let reason = printable(&t.reason);
        match &t.path {
            Some(p) => writeln!(out, "TAMPER    {}: {reason}", p.display())?,
            None => writeln!(out, "TAMPER    database: {reason}")?,
        }
    }
    for c in &r.changes {
        let mut line = format!(
            "{:<9} {} [{}]",
            c.change.name(),
            c.path.display(),
            c.severity
        );
        if c.change == ChangeKind::Modified {
            let (old, new) = (
                c.old.clone().unwrap_or_default(),
                c.new.clone().unwrap_or_default(),
            );
            let parts: Vec<String> = c
                .fields
                .iter()
                .map(|f| {
                    format!(
                        "{f} {} -> {}",
                        short(old.get(f).unwrap_or(&Value::Null)),
                        short(new.get(f).unwrap_or(&Value::Null))
                    )
                })
                .collect();
            line.push_str(": ");
            line.push_str(&parts.join(", "));
        }
        writeln!(out, "{line}")?;
        if let Some(p) = &c.package {
            let verdict = match (p.verified, p.conffile) {
                (true, _) => "package-verified",
                (false, true) => "conffile, not verified",
                (false, false) => "NOT verified",
            };
            writeln!(
                out,
                "          package {} {}: {verdict}: {}",
                p.name,
                p.version,
                p.evidence.escape_debug()
            )?;
        }
    }
    if let Some(e) = &r.package_error {
        writeln!(out, "error     package database: {e}")?;
    }
    for e in &r.errors {
        writeln!(
            out,
            "error     {}: {}",
            e.path.display(),
            printable(&e.error)
        )?;
    }
    for u in &r.unstable {
        writeln!(
            out,
            "unstable  {}: kept changing while hashed; no hash recorded",
            u.display()
        )?;
    }
    if let Some(p) = &r.packages {
        writeln!(out, "packages: {}", p.describe())?;
    }
    let count = |k: ChangeKind| r.changes.iter().filter(|c| c.change == k).count();
    writeln!(
        out,
        "{} scanned: {} added, {} removed, {} modified, {} errors, {} unstable, {} tamper findings{}; {} ms; db_digest {}",
        r.scanned,
        count(ChangeKind::Added),
        count(ChangeKind::Removed),
        count(ChangeKind::Modified),
        r.errors.len(),
        r.unstable.len(),
        r.tamper.len(),
        if r.updated { "; database updated" } else { "" },
        r.duration_ms,
        r.db_digest
    )
}
