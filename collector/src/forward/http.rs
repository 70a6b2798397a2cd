//! The HTTP sink: a batch of events POSTed as one body in the sink's
//! format; a 2xx answer acknowledges it (for `elasticsearch`, only when the
//! `_bulk` answer reports no failed item).

use super::ForwardError;
use super::client::{self, Endpoint};
use super::format::{bulk_acknowledged, http_body};
use super::sink::HttpFormat;
use crate::storage::EventRow;
use std::sync::Arc;
use std::time::Duration;

/// One HTTP receiver.
pub(crate) struct HttpSink {
    pub(crate) endpoint: Endpoint,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) server_name: String,
    pub(crate) format: HttpFormat,
    pub(crate) index: String,
    /// The `Authorization` header value, if any.
    pub(crate) authorization: Option<String>,
    pub(crate) timeout: Duration,
}

impl HttpSink {
    /// POSTs `events`; `Ok` once the receiver acknowledged all of them.
    pub(crate) async fn deliver(&self, events: &[&EventRow]) -> Result<(), ForwardError> {
        let (body, ctype) = http_body(self.format, &self.index, events);
        let mut headers = vec![("content-type", ctype.to_string())];
        if let Some(a) = &self.authorization {
            headers.push(("authorization", a.clone()));
        }
        let answer = client::post(
            &self.endpoint,
            self.tls.as_ref().map(|t| (t, self.server_name.as_str())),
            &headers,
            body,
            self.timeout,
        )
        .await?;
        if !(200..300).contains(&answer.status) {
            let text = String::from_utf8_lossy(&answer.body);
            return Err(ForwardError::Refused(format!(
                "{} answered {}: {}",
                self.endpoint.authority,
                answer.status,
                text.chars().take(200).collect::<String>()
            )));
        }
        if self.format == HttpFormat::Elasticsearch {
            bulk_acknowledged(&answer.body)
                .map_err(|e| ForwardError::Refused(format!("{}: {e}", self.endpoint.authority)))?;
        }
        Ok(())
    }
}
