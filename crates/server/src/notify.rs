//! Messages to people and systems outside Vigie: a JSON webhook or an
//! e-mail, sent in the background so that the alarm desk never waits on a
//! slow endpoint. Alarm escalation and rules' `notify` actions both go out
//! here. A failure is logged; what caused the message (the alarm, the rule's
//! firing) is in the audit trail whatever happens to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;

use crate::mail::Mailer;
use crate::outbound::HttpClient;

/// Messages on their way at once; more are dropped (and logged) rather than
/// queued without end during an alarm storm.
const MAX_IN_FLIGHT: usize = 256;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Notifier {
    http: Arc<HttpClient>,
    /// `None` without `mail.smtp_url`.
    mailer: Option<Arc<Mailer>>,
    in_flight: Arc<AtomicUsize>,
}

impl Notifier {
    pub fn from_config(mail: &crate::config::MailConfig, ca_file: &str) -> anyhow::Result<Self> {
        let mailer = if mail.smtp_url.is_empty() {
            None
        } else {
            Some(Arc::new(Mailer::new(&mail.smtp_url, &mail.from)?))
        };
        Ok(Self {
            http: Arc::new(HttpClient::new(ca_file, false, WEBHOOK_TIMEOUT, 64 * 1024)?),
            mailer,
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Whether e-mail can be sent (`mail.smtp_url` is set).
    pub fn mails(&self) -> bool {
        self.mailer.is_some()
    }

    /// A slot for one more message, or `None` (logged) when too many are out.
    fn slot(&self, what: &str) -> Option<Slot> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::error!(
                what,
                limit = MAX_IN_FLIGHT,
                "too many messages on their way: this one is dropped"
            );
            return None;
        }
        Some(Slot(Arc::clone(&self.in_flight)))
    }

    /// POSTs `body` as JSON to `url`; `what` names it in the log.
    pub fn post_json(&self, url: &str, body: serde_json::Value, what: String) {
        let Some(slot) = self.slot(&what) else {
            return;
        };
        let http = Arc::clone(&self.http);
        let url = url.to_owned();
        tokio::spawn(async move {
            let _slot = slot;
            let req = axum::http::Request::post(url.as_str())
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string())));
            let outcome = match req {
                Ok(req) => http.send(req, &what).await.map(|(status, ..)| status),
                Err(e) => {
                    tracing::warn!(what, %url, error = %e, "cannot build the webhook request");
                    return;
                }
            };
            match outcome {
                Ok(status) if status.is_success() => tracing::info!(what, %url, "webhook delivered"),
                Ok(status) => tracing::warn!(what, %url, %status, "the webhook refused"),
                Err(e) => tracing::warn!(what, %url, error = %e, "webhook not delivered"),
            }
        });
    }

    /// Mails `subject` and `body` to `to`; logged and dropped without a mailer.
    pub fn mail(&self, to: &str, subject: String, body: String, what: String) {
        let Some(mailer) = self.mailer.clone() else {
            tracing::warn!(what, to, "no mail.smtp_url: the e-mail is not sent");
            return;
        };
        let Some(slot) = self.slot(&what) else {
            return;
        };
        let to = to.to_owned();
        tokio::spawn(async move {
            let _slot = slot;
            match mailer.send(std::slice::from_ref(&to), &subject, &body).await {
                Ok(()) => tracing::info!(what, %to, "mailed"),
                Err(e) => tracing::warn!(what, %to, error = %e, "not mailed"),
            }
        });
    }
}

/// One message's place among those on their way, given back when it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
