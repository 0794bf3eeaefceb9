//! `/jsonldContexts` (5.13, 6.30): the @context documents Vigie knows. The
//! documents themselves are public, so that any JSON-LD processor can fetch
//! a context by its URL; listing, registering and deleting need a login.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use vigie_core::Action;

use crate::api::{ApiError, AppState, JsonBody, Params};
use crate::contexts::Origin;
use crate::security::Caller;

const PATH: &str = "/ngsi-ld/v1/jsonldContexts";

/// A hosted document's local id: a digest of its content, so registering
/// the same document twice gives the same URL.
fn local_id(doc: &Value) -> String {
    let digest = Sha256::digest(doc.to_string().as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// The URL a hosted document is served at, as the client reached Vigie.
fn hosted_url(s: &AppState, headers: &HeaderMap, id: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| s.config.http.listen.to_string(), str::to_owned);
    let scheme = if s.config.tls.enabled() { "https" } else { "http" };
    format!("{scheme}://{host}{PATH}/{id}")
}

fn kind(origin: Origin) -> &'static str {
    match origin {
        Origin::Hosted | Origin::Preloaded => "Hosted",
        Origin::Builtin | Origin::Cached => "Cached",
    }
}

/// The document for a local id or a (percent-encoded) URL.
fn find(s: &AppState, id: &str) -> Option<(String, Origin, std::sync::Arc<Value>)> {
    s.contexts
        .list()
        .into_iter()
        .find(|(url, origin, _)| url == id || (*origin == Origin::Hosted && url.rsplit('/').next() == Some(id)))
}

pub(super) async fn list(State(s): State<AppState>, caller: Caller, params: Params) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let all = s.contexts.list();
    let body: Vec<Value> = if params.get("details") == Some("true") {
        all.iter()
            .map(|(url, origin, _)| json!({"url": url, "kind": kind(*origin), "origin": origin}))
            .collect()
    } else {
        all.iter().map(|(url, _, _)| Value::String(url.clone())).collect()
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

pub(super) async fn serve(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (_, _, doc) = find(&s, &id).ok_or_else(|| ApiError::NotFound(format!("no @context '{id}'")))?;
    let mut res = (StatusCode::OK, axum::Json(doc.as_ref().clone())).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/ld+json"));
    Ok(res)
}

pub(super) async fn host(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(doc): JsonBody,
) -> Result<Response, ApiError> {
    caller.check(Action::WriteEntities)?;
    if doc.get("@context").is_none() {
        return Err(ApiError::BadRequestData(
            "the body must be a JSON-LD document with an @context".into(),
        ));
    }
    let id = local_id(&doc);
    let url = hosted_url(&s, &headers, &id);
    s.contexts
        .host(&url, doc)
        .map_err(|e| ApiError::BadRequestData(e.to_string()))?;
    let mut res = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{PATH}/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

pub(super) async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.check(Action::WriteEntities)?;
    let (url, origin, _) = find(&s, &id).ok_or_else(|| ApiError::NotFound(format!("no @context '{id}'")))?;
    if origin == Origin::Builtin {
        return Err(ApiError::BadRequestData(format!(
            "{url} is built into Vigie and cannot be deleted"
        )));
    }
    s.contexts.remove(&url);
    Ok(StatusCode::NO_CONTENT)
}
