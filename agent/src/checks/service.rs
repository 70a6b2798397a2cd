//! `kind = "service"`: a systemd unit's state, read offline from the
//! checked root's unit files exactly as `systemctl --root=ROOT is-enabled`
//! computes it ([`crate::systemd_units`]), never from a running systemd.
//! systemctl's word maps to the check's states:
//!
//! - `enabled`, `enabled-runtime`: enabled.
//! - `masked`, `masked-runtime`: masked, which also counts as disabled.
//! - `alias`: the state of the unit the name leads to. A name no unit file
//!   or link has, but some unit declares with `Alias=`, is judged as that
//!   unit (a rule on `sshd` judges `ssh.service`).
//! - not found: not installed, so not enabled.
//! - `static`, `disabled`, `indirect`, `linked`, `linked-runtime`,
//!   `generated`, `transient`: disabled, unless a symlink in a `*.wants`,
//!   `*.requires` or `*.upholds` directory (a vendor or generator link
//!   systemctl does not count) starts the unit at boot anyway: enabled,
//!   and the evidence says "started at boot by ... wants link".
//!
//! The first evidence line is systemctl's word with the link, file or line
//! that decided it.

use super::{Ctx, Outcome};
use crate::systemd_units::{self, UnitError, Word};
use plumb_core::check::{ServiceCheck, UnitState};

/// Most boot links listed in evidence.
const MAX_LINKS_SHOWN: usize = 5;

/// What the check concludes about a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Enabled,
    Disabled,
    Masked,
}

/// A wants link's kind, for evidence.
fn link_kind(link: &str) -> &'static str {
    if link.starts_with("/run/systemd/generator") {
        "a generator's wants link"
    } else if link.starts_with("/etc/") || link.starts_with("/run/") {
        "a wants link"
    } else {
        "a vendor wants link"
    }
}

fn judge(ctx: &Ctx, unit: &str, ev: &mut Vec<String>) -> Result<Verdict, UnitError> {
    let units = systemd_units::UnitFiles::shared(&ctx.fs, &ctx.unit_dirs);
    let Some((name, state)) = systemd_units::resolve(&units, || ctx.unit_aliases(), unit, ev)?
    else {
        return Ok(Verdict::Disabled);
    };
    ev.push(format!(
        "systemctl is-enabled {name}: {}, {}",
        state.word.as_str(),
        state.because.join(", ")
    ));
    Ok(match state.word {
        Word::Enabled | Word::EnabledRuntime => Verdict::Enabled,
        Word::Masked | Word::MaskedRuntime => Verdict::Masked,
        _ => {
            let links = units.boot_links(&name)?;
            for l in links.iter().take(MAX_LINKS_SHOWN) {
                ev.push(format!("started at boot by {}: {l}", link_kind(l)));
            }
            if links.len() > MAX_LINKS_SHOWN {
                ev.push(format!("and {} more links", links.len() - MAX_LINKS_SHOWN));
            }
            if links.is_empty() {
                Verdict::Disabled
            } else {
                Verdict::Enabled
            }
        }
    })
}

/// Evaluates a `service` check.
pub fn evaluate(spec: &ServiceCheck, ctx: &Ctx) -> Outcome {
    let unit = match systemd_units::unit_name(&spec.unit) {
        Ok(u) => u,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let mut ev = Vec::new();
    let verdict = match judge(ctx, &unit, &mut ev) {
        Ok(v) => v,
        Err(e) => return Outcome::error(e.to_string()),
    };
    if verdict != Verdict::Masked && spec.state == UnitState::Masked {
        ev.insert(0, format!("{unit} is not masked"));
    }
    let ok = match spec.state {
        UnitState::Enabled => verdict == Verdict::Enabled,
        UnitState::Disabled => verdict != Verdict::Enabled,
        UnitState::Masked => verdict == Verdict::Masked,
    };
    Outcome::verdict(ok, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd_units::tests::{link, write};
    use plumb_core::report::Status;
    use std::path::Path;

    fn run(root: &Path, unit: &str, state: UnitState) -> Outcome {
        let c = Ctx::new(root.to_path_buf(), None);
        evaluate(
            &ServiceCheck {
                unit: unit.into(),
                state,
            },
            &c,
        )
    }

    /// The three verdicts: enabled, disabled, masked.
    fn verdicts(root: &Path, unit: &str) -> [Status; 3] {
        [UnitState::Enabled, UnitState::Disabled, UnitState::Masked]
            .map(|s| run(root, unit, s).status)
    }

    const ENABLED: [Status; 3] = [Status::Pass, Status::Fail, Status::Fail];
    const DISABLED: [Status; 3] = [Status::Fail, Status::Pass, Status::Fail];
    const MASKED: [Status; 3] = [Status::Fail, Status::Pass, Status::Pass];

    const UNIT: &str = "[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn unit_names() {
        use crate::systemd_units::unit_name;
        assert_eq!(unit_name("ssh").unwrap(), "ssh.service");
        assert_eq!(unit_name("ssh.socket").unwrap(), "ssh.socket");
        assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
        assert_eq!(unit_name("org.foo").unwrap(), "org.foo.service");
        for bad in ["", "..", "../x", "a b", "a/b"] {
            assert!(unit_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            run(Path::new("/nonexistent"), "../etc", UnitState::Disabled).status,
            Status::Error
        );
    }

    #[test]
    fn enabled_by_a_wants_link_in_etc() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/ssh.service", UNIT);
        link(
            r,
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
        );
        let out = run(r, "ssh", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled ssh.service: enabled, by /etc/systemd/system/multi-user.target.wants/ssh.service -> /lib/systemd/system/ssh.service"
            ]
        );
        assert_eq!(verdicts(r, "ssh"), ENABLED);
        let out = run(r, "ssh.service", UnitState::Masked);
        assert_eq!(out.evidence[0], "ssh.service is not masked");
    }

    #[test]
    fn a_vendor_wants_link_starts_it_at_boot_and_says_so() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/usr/lib/systemd/system/journald.service", "[Service]\n");
        link(
            r,
            "../journald.service",
            "/usr/lib/systemd/system/sysinit.target.wants/journald.service",
        );
        let out = run(r, "journald", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled journald.service: static, /usr/lib/systemd/system/journald.service has no [Install] rules",
                "started at boot by a vendor wants link: /usr/lib/systemd/system/sysinit.target.wants/journald.service -> ../journald.service",
            ]
        );
    }

    #[test]
    fn entries_systemd_ignores_do_not_enable() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/telnet.service", UNIT);
        // A regular file, a link in a *.wants that is itself a link, and a
        // link whose name only starts alike.
        write(
            r,
            "/etc/systemd/system/multi-user.target.wants/telnet.service",
            "[Unit]\n",
        );
        link(
            r,
            "/lib/systemd/system/telnet.service",
            "/srv/w/telnet.service",
        );
        link(
            r,
            "../../srv/w",
            "/etc/systemd/system/graphical.target.wants",
        );
        link(
            r,
            "/x",
            "/etc/systemd/system/default.target.wants/telnet.service.bak",
        );
        let out = run(r, "telnet", UnitState::Disabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled telnet.service: disabled, no link in place for WantedBy=multi-user.target (/lib/systemd/system/telnet.service:4)"
            ]
        );
        assert_eq!(verdicts(r, "telnet"), DISABLED);
        // A dangling wants link to a unit that does not exist: not installed.
        link(
            r,
            "/lib/systemd/system/rsh.service",
            "/etc/systemd/system/multi-user.target.wants/rsh.service",
        );
        let out = run(r, "rsh", UnitState::Disabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled rsh.service: not-found, rsh.service is not installed (no unit file named rsh.service)"
            ]
        );
        assert_eq!(verdicts(r, "rsh"), DISABLED);
    }

    #[test]
    fn masks_of_every_kind() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for u in ["a", "b", "c", "d", "e"] {
            write(r, &format!("/usr/lib/systemd/system/{u}.service"), UNIT);
        }
        // The root has no /dev at all: the link text alone decides.
        link(r, "/dev/null", "/etc/systemd/system/a.service");
        link(r, "/dev/null", "/lib/systemd/system/b.service");
        write(r, "/etc/systemd/system/c.service", "");
        link(r, "/dev/null", "/opt/masks/d.service");
        link(r, "/opt/masks/d.service", "/etc/systemd/system/d.service");
        link(r, "/dev/null", "/run/systemd/generator/e.service");
        for u in ["a", "b", "c", "d", "e"] {
            assert_eq!(verdicts(r, u), MASKED, "{u}");
        }
        let out = run(r, "d", UnitState::Masked);
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled d.service: masked, by /etc/systemd/system/d.service -> /opt/masks/d.service, /opt/masks/d.service -> /dev/null"
            ]
        );
        let out = run(r, "e", UnitState::Masked);
        assert!(out.evidence[0].contains(": masked-runtime, "), "{out:?}");
        let out = run(r, "c", UnitState::Masked);
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled c.service: masked, /etc/systemd/system/c.service is an empty file"
            ]
        );
        // A masked unit with a leftover wants link is masked, not enabled.
        link(
            r,
            "/usr/lib/systemd/system/a.service",
            "/etc/systemd/system/multi-user.target.wants/a.service",
        );
        assert_eq!(verdicts(r, "a"), MASKED);
    }

    #[test]
    fn a_unit_file_in_etc_overrides_a_runtime_mask() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/bluetooth.service", UNIT);
        link(r, "/dev/null", "/run/systemd/system/bluetooth.service");
        assert_eq!(verdicts(r, "bluetooth"), MASKED);
        write(r, "/etc/systemd/system/bluetooth.service", UNIT);
        assert_eq!(verdicts(r, "bluetooth"), DISABLED);
    }

    #[test]
    fn templates_and_instances() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "/lib/systemd/system/getty@.service",
            "[Install]\nWantedBy=getty.target\n",
        );
        link(
            r,
            "/lib/systemd/system/getty@.service",
            "/etc/systemd/system/getty.target.wants/getty@tty1.service",
        );
        assert_eq!(verdicts(r, "getty@tty1"), ENABLED);
        assert_eq!(verdicts(r, "getty@tty2"), DISABLED);
        // The template: systemctl says indirect; its instance starts at boot.
        let out = run(r, "getty@.service", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[0].starts_with("systemctl is-enabled getty@.service: indirect, "));
        assert_eq!(
            out.evidence[1],
            "started at boot by a wants link: /etc/systemd/system/getty.target.wants/getty@tty1.service -> /lib/systemd/system/getty@.service"
        );
        // A masked instance with a leftover link does not enable the template.
        link(r, "/dev/null", "/etc/systemd/system/getty@tty1.service");
        assert_eq!(verdicts(r, "getty@tty1"), MASKED);
        assert_eq!(verdicts(r, "getty@.service"), DISABLED);
        // A masked template with a leftover link is masked, instances too.
        std::fs::remove_file(r.join("etc/systemd/system/getty@tty1.service")).unwrap();
        link(r, "/dev/null", "/etc/systemd/system/getty@.service");
        assert_eq!(verdicts(r, "getty@.service"), MASKED);
        assert_eq!(verdicts(r, "getty@tty1"), MASKED);
    }

    #[test]
    fn aliases_judge_the_unit_they_name() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            r,
            "/lib/systemd/system/ssh.service",
            "[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
        );
        // Declared only: sshd has no file or link, ssh declares the name.
        let out = run(r, "sshd", UnitState::Disabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled sshd.service: not-found, Alias=sshd.service (/lib/systemd/system/ssh.service:3) makes it a name of ssh.service",
                "systemctl is-enabled ssh.service: disabled, no link in place for WantedBy=multi-user.target (/lib/systemd/system/ssh.service:2), Alias=sshd.service (/lib/systemd/system/ssh.service:3)",
            ]
        );
        // Enabled through its Alias= link alone.
        link(
            r,
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/sshd.service",
        );
        assert_eq!(verdicts(r, "ssh"), ENABLED);
        let out = run(r, "sshd", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "systemctl is-enabled sshd.service: alias of ssh.service, by /etc/systemd/system/sshd.service -> /lib/systemd/system/ssh.service",
                "systemctl is-enabled ssh.service: enabled, by /etc/systemd/system/sshd.service -> /lib/systemd/system/ssh.service",
            ]
        );
        // A vendor alias link, and an alias declared in a drop-in.
        write(r, "/lib/systemd/system/cron.service", UNIT);
        link(r, "cron.service", "/lib/systemd/system/crond.service");
        write(
            r,
            "/etc/systemd/system/cron.service.d/x.conf",
            "[Install]\nAlias=vixie.service\n",
        );
        link(
            r,
            "/lib/systemd/system/cron.service",
            "/etc/systemd/system/multi-user.target.wants/cron.service",
        );
        assert_eq!(verdicts(r, "crond"), ENABLED);
        assert_eq!(verdicts(r, "vixie"), ENABLED);
        link(r, "/dev/null", "/etc/systemd/system/cron.service");
        assert_eq!(verdicts(r, "crond"), MASKED);
    }

    #[test]
    fn generator_links_and_not_installed() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/data.mount", "[Mount]\n");
        link(
            r,
            "/lib/systemd/system/data.mount",
            "/run/systemd/generator/local-fs.target.requires/data.mount",
        );
        let out = run(r, "data.mount", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[0].contains(": enabled-runtime, by /run/systemd/generator/"));
        let out = run(t.path(), "rsh", UnitState::Disabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(verdicts(r, "rsh"), DISABLED);
    }
}
