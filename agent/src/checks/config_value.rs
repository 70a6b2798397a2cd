//! `kind = "config_value"`: the value of a key in key/value files such as
//! `/etc/login.defs` or `/etc/default/*`, lines split as
//! [`crate::key_value`] does for the `config_set` remediation too. The last
//! occurrence wins unless `first_wins` (files in name order when `path` is
//! a glob). Keys and values are case-sensitive unless `ignore_case`, for
//! files whose program reads them case-insensitively: auditd.conf
//! (auditd compares keys and keyword values with `strcasecmp`, so
//! `max_log_file_action = KEEP_LOGS` keeps logs).

use super::{Ctx, Outcome};
use crate::key_value::split_line;
use plumb_core::check::ConfigValueCheck;

/// Evaluates a `config_value` check.
pub fn evaluate(spec: &ConfigValueCheck, ctx: &Ctx) -> Outcome {
    let cmp = match spec.comparison() {
        Ok(c) => c,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let paths = match ctx.fs.glob(&spec.path) {
        Ok(p) => p,
        Err(e) => return Outcome::error(format!("cannot list {}: {e}", spec.path)),
    };
    let mut found: Option<(String, String)> = None;
    'files: for path in &paths {
        let file = match ctx.fs.read_text(path) {
            Ok(f) => f,
            Err(e) => return Outcome::read_error(&e),
        };
        for (n, line) in file.numbered() {
            if let Some((k, v)) = split_line(line, spec.separator.as_deref()) {
                if k == spec.key || (spec.ignore_case && k.eq_ignore_ascii_case(&spec.key)) {
                    found = Some((v.to_string(), file.at(n)));
                    if spec.first_wins {
                        break 'files;
                    }
                }
            }
        }
    }
    let holds = cmp.holds(found.as_ref().map(|(v, _)| v.as_str()), spec.ignore_case);
    let mut ev = vec![match &found {
        Some((v, at)) => format!("{} {v} ({at})", spec.key),
        None if paths.is_empty() => format!("{} not set: {} does not exist", spec.key, spec.path),
        None => format!("{} not set in {}", spec.key, paths.join(", ")),
    }];
    if !holds {
        ev.push(cmp.to_string());
    }
    Outcome::verdict(holds, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::compare::Scalar;
    use plumb_core::report::Status;

    fn spec(path: &str, key: &str) -> ConfigValueCheck {
        ConfigValueCheck {
            path: path.into(),
            key: key.into(),
            separator: None,
            first_wins: false,
            ignore_case: false,
            equals: None,
            one_of: None,
            min: None,
            max: None,
            absent: None,
            excludes: None,
        }
    }

    #[test]
    fn last_wins_by_default_and_numbers_compare() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/login.defs"),
            "# PASS_MAX_DAYS 1\nPASS_MAX_DAYS 99999\nPASS_MIN_DAYS\t1\nPASS_MAX_DAYS 365\n",
        )
        .unwrap();
        let ctx = Ctx::new(t.path(), None);
        let s = ConfigValueCheck {
            max: Some(365),
            ..spec("/etc/login.defs", "PASS_MAX_DAYS")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(out.evidence, vec!["PASS_MAX_DAYS 365 (/etc/login.defs:4)"]);
        let s = ConfigValueCheck {
            first_wins: true,
            ..s
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence,
            vec![
                "PASS_MAX_DAYS 99999 (/etc/login.defs:2)",
                "expected at most 365"
            ]
        );
        let s = ConfigValueCheck {
            equals: Some(Scalar::Int(1)),
            ..spec("/etc/login.defs", "PASS_MIN_DAYS")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
    }

    #[test]
    fn absent_keys_and_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/default")).unwrap();
        std::fs::write(t.path().join("etc/default/a"), "X=1\n").unwrap();
        std::fs::write(t.path().join("etc/default/b"), "X=2\n").unwrap();
        let ctx = Ctx::new(t.path(), None);
        let s = ConfigValueCheck {
            equals: Some(Scalar::Int(2)),
            ..spec("/etc/default/*", "X")
        };
        assert_eq!(evaluate(&s, &ctx).evidence, vec!["X 2 (/etc/default/b:1)"]);
        let s = ConfigValueCheck {
            absent: Some(true),
            ..spec("/etc/default/*", "Y")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
        let s = ConfigValueCheck {
            equals: Some(Scalar::Int(1)),
            ..spec("/etc/nope", "X")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(out.evidence[0], "X not set: /etc/nope does not exist");
    }

    #[test]
    fn auditd_values_compare_case_insensitively_when_asked() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/audit")).unwrap();
        std::fs::write(
            t.path().join("etc/audit/auditd.conf"),
            "max_log_file_action = KEEP_LOGS\nSpace_Left_Action = Email\n",
        )
        .unwrap();
        let ctx = Ctx::new(t.path(), None);
        let s = ConfigValueCheck {
            separator: Some("=".into()),
            equals: Some(Scalar::Str("keep_logs".into())),
            ..spec("/etc/audit/auditd.conf", "max_log_file_action")
        };
        assert_eq!(
            evaluate(&s, &ctx).status,
            Status::Fail,
            "case-sensitive by default"
        );
        let s = ConfigValueCheck {
            ignore_case: true,
            ..s
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.evidence,
            vec!["max_log_file_action KEEP_LOGS (/etc/audit/auditd.conf:1)"]
        );
        let s = ConfigValueCheck {
            ignore_case: true,
            equals: Some(Scalar::Str("email".into())),
            ..spec("/etc/audit/auditd.conf", "space_left_action")
        };
        let s = ConfigValueCheck {
            separator: Some("=".into()),
            ..s
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
    }
}
