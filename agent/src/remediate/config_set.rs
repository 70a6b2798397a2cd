//! `config_set`: sets a key in a key/value file. The line the
//! `config_value` check reads (the last occurrence, or the first with
//! `first_wins`) gets the new value, the other occurrences are commented
//! out with `# plumb: `, and every other byte stays as it was. An absent
//! key is appended (the file created when missing).

use super::plan::{self, COMMENT_PREFIX, Plan, PlanError, View};
use crate::key_value::split_line;
use plumb_core::check::ConfigValueCheck;
use plumb_core::compare::Scalar;

/// Plans setting `key` to `value` in `path`. `check` is the rule's check
/// when it is a `config_value` one: its separator and `first_wins` decide
/// which line is the effective one.
pub fn plan(
    view: &View,
    path: &str,
    key: &str,
    value: &Scalar,
    separator: Option<&str>,
    check: Option<&ConfigValueCheck>,
) -> Result<Plan, PlanError> {
    let value = value.as_text();
    plan::one_line("key", key)?;
    plan::one_line("value", &value)?;
    if key.trim().is_empty() || key.trim() != key || key.starts_with('#') {
        return Err(format!("\"{key}\" is not a key that can be written").into());
    }
    let parse_sep: Option<String> = check.and_then(|c| c.separator.clone()).or_else(|| {
        separator
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    let write_sep = separator
        .map(str::to_string)
        .or_else(|| check.and_then(|c| c.separator.clone()))
        .unwrap_or_else(|| " ".to_string());
    if let Some(s) = separator {
        plan::one_line("separator", s)?;
    }
    let first_wins = check.is_some_and(|c| c.first_wins);

    let old = view.read(path)?;
    let bytes = old.clone().unwrap_or_default();
    let lines = plan::lines(&bytes);
    let hits: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            split_line(&plan::text(l), parse_sep.as_deref()).is_some_and(|(k, _)| k == key)
        })
        .map(|(i, _)| i)
        .collect();
    let effective = if first_wins {
        hits.first()
    } else {
        hits.last()
    };
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut new = Vec::with_capacity(bytes.len() + 64);
    match effective {
        None => {
            new.extend_from_slice(&bytes);
            plan::append_line(&mut new, &format!("{key}{write_sep}{value}"));
        }
        Some(&eff) => {
            let text = plan::text(lines[eff]);
            if let Some((_, v)) = split_line(&text, parse_sep.as_deref()) {
                if fold(v) == fold(&value) {
                    return Ok(Plan::default());
                }
            }
            // Keep the quoting the file used for this value.
            let raw = text.trim_end();
            let quote = ['"', '\'']
                .into_iter()
                .find(|q| raw.ends_with(*q) && raw.matches(*q).count() >= 2);
            let shown = match quote {
                Some(q) => format!("{q}{value}{q}"),
                None => value.clone(),
            };
            for (i, l) in lines.iter().enumerate() {
                if i == eff {
                    new.extend_from_slice(plan::indent(l));
                    new.extend_from_slice(format!("{key}{write_sep}{shown}").as_bytes());
                    new.extend_from_slice(plan::terminator(l));
                } else if hits.contains(&i) {
                    new.extend_from_slice(COMMENT_PREFIX);
                    new.extend_from_slice(l);
                } else {
                    new.extend_from_slice(l);
                }
            }
        }
    }
    let mut p = Plan::default();
    p.ops.extend(view.write(path, old, new)?);
    Ok(p)
}
