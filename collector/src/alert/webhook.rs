//! The webhook call of an alert: the JSON body (the default shape, or the
//! rule's template with JSON-escaped values), its HMAC-SHA256 signature,
//! and the POST, retried with backoff.

use super::rule::{AlertRule, Fired};
use crate::forward::client::{self, Endpoint};
use crate::forward::format::{document, rfc3339};
use crate::forward::{Backoff, ForwardError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 8] = [
    "alert", "on", "host", "rule", "severity", "summary", "time", "seq",
];

/// The header carrying the signature: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the exact body bytes with the rule's secret.
pub const SIGNATURE_HEADER: &str = "x-plumb-signature";

/// The values of the placeholders for `fired` by `rule`.
fn values(rule: &AlertRule, f: &Fired) -> [(&'static str, String); 8] {
    [
        ("alert", rule.name.clone()),
        ("on", rule.on.name().to_string()),
        ("host", f.host.clone()),
        ("rule", f.rule.clone()),
        ("severity", f.severity.clone()),
        ("summary", f.summary.clone()),
        ("time", rfc3339(f.time)),
        (
            "seq",
            f.event
                .as_ref()
                .map(|e| e.seq.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// The default body.
pub fn default_body(rule: &AlertRule, f: &Fired) -> Value {
    json!({
        "alert": rule.name,
        "on": rule.on.name(),
        "host": f.host,
        "rule": if f.rule.is_empty() { Value::Null } else { Value::from(f.rule.as_str()) },
        "severity": f.severity,
        "summary": f.summary,
        "time": rfc3339(f.time),
        "event": f.event.as_ref().map(|e| Value::Object(document(e))),
    })
}

/// Why a rule's template cannot make a body (the text is the config
/// diagnostic's, or the warning when an alert's body cannot be made).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without its `}}`.
    #[error("unterminated {{{{ placeholder")]
    Unterminated,
    /// A name not in [`PLACEHOLDERS`].
    #[error("unknown placeholder {{{{{name}}}}} (known: {known})", known = PLACEHOLDERS.join(", "))]
    Unknown {
        /// the name between the braces, trimmed
        name: String,
    },
    /// The filled template does not parse as JSON.
    #[error("not JSON once filled: {0}")]
    NotJson(serde_json::Error),
}

/// `template` with each `{{name}}` replaced by `value(name)` escaped for
/// the inside of a JSON string (the template puts the quotes). `Err` names
/// an unknown or unterminated placeholder.
fn substitute(
    template: &str,
    value: impl Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unterminated)?;
        let name = after[..end].trim();
        let v = value(name).ok_or_else(|| TemplateError::Unknown {
            name: name.to_owned(),
        })?;
        // A JSON string's escaping, without its quotes.
        let quoted = Value::from(v).to_string();
        out.push_str(&quoted[1..quoted.len() - 1]);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `template` is usable: known placeholders, and JSON once filled
/// (with values holding every character JSON escapes).
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    let filled = substitute(template, |n| {
        PLACEHOLDERS
            .contains(&n)
            .then(|| "a \"b\" \\ c\n".to_string())
    })?;
    serde_json::from_str::<Value>(&filled)
        .map(|_| ())
        .map_err(TemplateError::NotJson)
}

/// The body of `fired` by `rule`: its template filled, or the default body.
pub fn body(rule: &AlertRule, f: &Fired) -> Result<Vec<u8>, TemplateError> {
    match &rule.template {
        Some(t) => {
            let vals = values(rule, f);
            substitute(t, |n| {
                vals.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())
            })
            .map(String::into_bytes)
        }
        None => Ok(default_body(rule, f).to_string().into_bytes()),
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` with `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// One rule's webhook, ready to call.
pub(crate) struct Webhook {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    secret: Option<String>,
    timeout: Duration,
    attempts: u32,
}

impl Webhook {
    pub(crate) fn new(rule: &AlertRule) -> Result<Webhook, ForwardError> {
        let cfg_err = |e: String| ForwardError::Config(format!("alert {}: {e}", rule.name));
        let endpoint = Endpoint::parse(&rule.webhook).map_err(|e| cfg_err(e.to_string()))?;
        let tls = rule
            .ca
            .as_deref()
            .map(|ca| client::tls_config(ca, None))
            .transpose()?;
        let secret = rule
            .secret_file
            .as_deref()
            .map(crate::forward::read_secret)
            .transpose()?;
        Ok(Webhook {
            endpoint,
            tls,
            secret,
            timeout: Duration::from_secs(rule.timeout_secs),
            attempts: rule.attempts,
        })
    }

    /// POSTs `body` until a 2xx answer or the attempts run out; the last
    /// error then.
    pub(crate) async fn send(&self, body: Vec<u8>) -> Result<u32, ForwardError> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(s) = &self.secret {
            headers.push((SIGNATURE_HEADER, signature(s.as_bytes(), &body)));
        }
        let mut backoff = Backoff::new(Duration::from_secs(60));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = client::post(
                &self.endpoint,
                self.tls.as_ref().map(|t| (t, self.endpoint.host.as_str())),
                &headers,
                body.clone(),
                self.timeout,
            )
            .await;
            let err = match r {
                Ok(a) if (200..300).contains(&a.status) => return Ok(attempt),
                Ok(a) => ForwardError::Refused(format!(
                    "{} answered {}",
                    self.endpoint.authority, a.status
                )),
                Err(e) => e,
            };
            if attempt >= self.attempts {
                return Err(err);
            }
            let wait = backoff.next_wait();
            tracing::debug!("webhook attempt {attempt}: {err}; again in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_escape_values_and_refuse_unknown_placeholders() {
        let t = r#"{"text": "{{summary}} on {{host}}", "seq": "{{seq}}"}"#;
        assert!(check_template(t).is_ok());
        let s = substitute(t, |n| {
            Some(match n {
                "summary" => "rule \"x\" \\ failed\n".into(),
                "host" => "web-1".into(),
                _ => String::new(),
            })
        })
        .unwrap();
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["text"], "rule \"x\" \\ failed\n on web-1");
        assert!(
            check_template(r#"{"a": "{{nope}}"}"#)
                .unwrap_err()
                .to_string()
                .contains("unknown placeholder {{nope}}")
        );
        assert!(
            check_template(r#"{"a": {{host}}}"#)
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
        assert!(check_template(r#"{"a": "{{host"}"#).is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
