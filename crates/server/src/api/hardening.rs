//! What every HTTP response gets, whatever route answered: security headers,
//! and errors as ProblemDetails even when the framework produced them (no
//! route, wrong method, timeout, body too large, panic) — with nothing of
//! the server's internals in them.

use axum::Router;
use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Duration;

use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::error::{ERROR_BASE, PROBLEM_JSON};
use crate::config::HttpConfig;

/// No inline script or style, nothing from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
/// Browser features the console never uses, denied.
pub const PERMISSIONS_POLICY: &str =
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";
/// Two years would be the preload norm; one is the usual start.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

/// Longest framework error text kept as a ProblemDetails `detail`.
const MAX_KEPT_DETAIL: usize = 512;

/// Wraps the whole application (API and extra routes): request bodies capped
/// at `http.max_body_bytes` before any handler runs, requests cut at
/// `http.request_timeout_secs` (408), panics caught (500), framework errors
/// turned into ProblemDetails, and security headers on every response (HSTS
/// when `tls`).
pub fn harden(app: Router, tls: bool, limits: &HttpConfig) -> Router {
    app.layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        // Logs the panic message; the client gets a bare 500, made a ProblemDetails below.
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(problem_for_framework_errors))
        .layer(axum::middleware::from_fn(
            move |req: Request<Body>, next: Next| async move {
                let mut res = next.run(req).await;
                security_headers(res.headers_mut(), tls);
                res
            },
        ))
}

/// Adds the security headers a response does not set itself.
pub fn security_headers(headers: &mut HeaderMap, tls: bool) {
    let mut set = |name: HeaderName, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    set(HeaderName::from_static("permissions-policy"), PERMISSIONS_POLICY);
    // Live state and personal data (vehicle positions): no cache keeps a copy.
    set(header::CACHE_CONTROL, "no-store");
    if tls {
        set(header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY);
    }
}

/// An error response that is neither JSON nor HTML came from the framework
/// or a layer, not from a handler (handlers answer ProblemDetails, and the
/// browser pages of login and single sign-on answer HTML): it becomes a
/// ProblemDetails, its other headers (Allow on 405) kept.
async fn problem_for_framework_errors(req: Request<Body>, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(res.headers()) || is_html(res.headers()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // The framework's own words are kept for client errors it explains
    // (a bad JSON body on a route that uses axum's extractor); server errors
    // never say more than that they happened.
    let text = if status.is_client_error() {
        axum::body::to_bytes(body, MAX_KEPT_DETAIL)
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .filter(|t| !t.trim().is_empty())
    } else {
        None
    };
    let problem = framework_problem(status, text);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, Body::from(problem.to_string()))
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/html"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
}

/// The ProblemDetails for an error status no handler explained.
pub fn framework_problem(status: StatusCode, text: Option<String>) -> serde_json::Value {
    let reason = status.canonical_reason().unwrap_or("Error");
    let (kind, detail) = match status {
        StatusCode::NOT_FOUND => ("ResourceNotFound", "there is no resource at this path".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "InvalidRequest",
            "this resource does not support the request's method; the Allow header lists those it does".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "InternalError",
            "the request took longer than the configured limit (http.request_timeout_secs)".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "InvalidRequest",
            "the request body exceeds the configured limit (http.max_body_bytes)".to_owned(),
        ),
        s if s.is_server_error() => (
            "InternalError",
            "an internal error occurred; see the server log".to_owned(),
        ),
        _ => ("InvalidRequest", text.unwrap_or_else(|| reason.to_owned())),
    };
    serde_json::json!({
        "type": format!("{ERROR_BASE}{kind}"),
        "title": reason,
        "status": status.as_u16(),
        "detail": detail,
    })
}
