//! Vigie's outgoing HTTP: the OpenID provider, remote JSON-LD contexts and
//! subscription notifications all go through one client that is bounded in
//! time and size, follows no redirects, and checks TLS with the ring provider
//! against the system's CA certificates (and a configured file's).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{self, HeaderMap, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The client cannot be built (CA file, TLS).
    #[error("{0}")]
    Config(String),
    /// The request failed: connection, TLS, or an answer too large.
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    #[error("{what}: no answer within {} ms", .timeout.as_millis())]
    Timeout { what: String, timeout: Duration },
}

enum Transport {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

pub struct HttpClient {
    transport: Transport,
    timeout: Duration,
    max_response_bytes: usize,
}

impl HttpClient {
    /// A client whose every request ends within `timeout` and reads at most
    /// `max_response_bytes`. With `require_tls` and no CA certificate at
    /// all, it refuses to start rather than fail every request later.
    pub fn new(
        ca_file: &str,
        require_tls: bool,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, OutboundError> {
        Ok(Self {
            transport: transport(ca_file, require_tls, timeout)?,
            timeout,
            max_response_bytes,
        })
    }

    /// Sends one request; `what` names it in errors.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        what: &str,
    ) -> Result<(StatusCode, HeaderMap, Bytes), OutboundError> {
        let failed = |reason: String| OutboundError::Failed {
            what: what.to_owned(),
            reason,
        };
        let call = async {
            let res = match &self.transport {
                Transport::Plain(c) => c.request(req).await,
                Transport::Tls(c) => c.request(req).await,
            }
            .map_err(|e| failed(chain(&e)))?;
            let (parts, body) = res.into_parts();
            let bytes = Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    failed(format!(
                        "cannot read the answer (at most {} bytes): {e}",
                        self.max_response_bytes
                    ))
                })?
                .to_bytes();
            Ok((parts.status, parts.headers, bytes))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| OutboundError::Timeout {
                what: what.to_owned(),
                timeout: self.timeout,
            })?
    }
}

/// An error with its causes, for messages about network failures.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn transport(ca_file: &str, require_tls: bool, timeout: Duration) -> Result<Transport, OutboundError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if !ca_file.is_empty() {
        let bad = |e: &dyn std::fmt::Display| OutboundError::Config(format!("CA file {ca_file}: {e}"));
        let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(&e))?;
        let mut n = 0;
        for cert in certs {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad(&"no PEM certificate in the file"));
        }
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    if roots.is_empty() {
        if require_tls {
            return Err(OutboundError::Config(
                "no CA certificate to check servers with: install the system's (ca-certificates) or set a CA file"
                    .into(),
            ));
        }
        http.enforce_http(true);
        return Ok(Transport::Plain(Client::builder(TokioExecutor::new()).build(http)));
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| OutboundError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Transport::Tls(Client::builder(TokioExecutor::new()).build(https)))
}
