//! The JSON-LD boundary of the NGSI-LD API. Vigie keeps names as the core
//! context compacts them; a request bringing another `@context` (a `Link`
//! header, or inline with `application/ld+json`) has its names translated on
//! the way in and the answer's on the way out, and `Accept:
//! application/ld+json` answers with the `@context` in the body. Requests
//! with neither (most traffic: the simulator, the console, MQTT) pass
//! straight through.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use vigie_core::ngsi::context::{CORE_CONTEXT_URL, ContextError};
use vigie_core::ngsi::{ActiveContext, Representation, Translation, link_header_value, parse_link_header};

use crate::api::{ApiError, AppState};

const LD_JSON: &str = "application/ld+json";
/// Query parameters that hold attribute or type names.
const NAME_PARAMETERS: [&str; 6] = ["type", "attrs", "pick", "omit", "geoproperty", "watchedAttributes"];

/// What a path's bodies and answers hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Entities, entity fragments or arrays of them.
    Entities,
    /// `/entities/{id}/attrs/{attr}`: the attribute name is in the path.
    Attribute,
    Subscriptions,
    Query,
    /// `/types`, `/attributes`: names in lists and in the path.
    Discovery,
    /// `/jsonldContexts` and the rest: nothing to translate.
    Other,
}

fn shape(path: &str) -> Shape {
    let rest = path.strip_prefix("/ngsi-ld/v1/").unwrap_or("");
    let rest = rest.strip_prefix("temporal/").unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["entities", _, "attrs", _] => Shape::Attribute,
        ["entities", ..] => Shape::Entities,
        ["entityOperations", "query"] => Shape::Query,
        ["entityOperations", ..] => Shape::Entities,
        ["subscriptions", ..] => Shape::Subscriptions,
        ["types", ..] | ["attributes", ..] => Shape::Discovery,
        _ => Shape::Other,
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn context_error(e: ContextError) -> ApiError {
    match e {
        ContextError::NotAvailable { .. } => ApiError::LdContextNotAvailable(e.to_string()),
        ContextError::InvalidLink(_) => ApiError::InvalidRequest(e.to_string()),
        _ => ApiError::BadRequestData(e.to_string()),
    }
}

/// Which media type the client accepts: JSON-LD, JSON, or neither (406).
fn accepts_ld(headers: &HeaderMap) -> Result<bool, ApiError> {
    let accept = header_str(headers, header::ACCEPT);
    if accept.is_empty() {
        return Ok(false);
    }
    let types: Vec<&str> = accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    if types
        .iter()
        .any(|t| matches!(*t, "application/json" | "*/*" | "application/*"))
    {
        return Ok(false);
    }
    if types.contains(&LD_JSON) {
        return Ok(true);
    }
    Err(ApiError::NotAcceptable(format!(
        "cannot answer '{accept}': Vigie answers application/json or application/ld+json"
    )))
}

pub(super) async fn boundary(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match translate(&s, req, next).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn translate(s: &AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    let headers = req.headers();
    let ld_body = header_str(headers, header::CONTENT_TYPE).starts_with(LD_JSON);
    let link = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let link = if link.is_empty() {
        None
    } else {
        parse_link_header(&link).map_err(context_error)?
    };
    let answer_ld = accepts_ld(headers)?;
    if !ld_body && link.is_none() && !answer_ld {
        return Ok(next.run(req).await);
    }
    let has_body = matches!(*req.method(), Method::POST | Method::PATCH | Method::PUT);
    if ld_body && link.is_some() && has_body {
        return Err(ApiError::BadRequestData(
            "an application/ld+json body carries its @context: send no Link header with it".into(),
        ));
    }
    let shape = shape(req.uri().path());
    let (mut parts, body) = req.into_parts();
    let mut body_json: Option<Value> = None;
    if has_body {
        let bytes = to_bytes(body, s.config.http.max_body_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge("the request body exceeds http.max_body_bytes".into()))?;
        if !bytes.is_empty() {
            body_json = Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::InvalidRequest(format!("the body is not valid JSON: {e}")))?,
            );
        }
    }
    // The request's context: inline in a JSON-LD body, else the Link, else the core.
    let inline = if ld_body {
        let found = body_json.as_ref().and_then(inline_context);
        if has_body && body_json.is_some() && found.is_none() {
            return Err(ApiError::BadRequestData(
                "an application/ld+json body must carry an @context".into(),
            ));
        }
        found
    } else {
        None
    };
    let context_value = inline
        .clone()
        .or_else(|| link.clone().map(Value::String))
        .unwrap_or_else(|| Value::String(CORE_CONTEXT_URL.into()));
    let active = s.contexts.resolve(&context_value).await.map_err(context_error)?;

    let incoming = Translation::incoming(&active);
    parts.uri = translate_uri(&parts.uri, shape, incoming)?;
    if let Some(body) = &mut body_json {
        strip_contexts(body);
        translate_body(body, shape, incoming, Representation::Normalized).map_err(context_error)?;
    }
    let body = match &body_json {
        Some(v) => Body::from(serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()))?),
        None => Body::empty(),
    };
    // The handlers read JSON: the body's context has been applied.
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::LINK);
    let representation = if query_has(&parts.uri, "options", &["keyValues", "simplified"])
        || query_has(&parts.uri, "format", &["keyValues", "simplified"])
    {
        Representation::KeyValues
    } else if query_has(&parts.uri, "options", &["concise"]) || query_has(&parts.uri, "format", &["concise"]) {
        Representation::Concise
    } else {
        Representation::Normalized
    };

    let res = next.run(Request::from_parts(parts, body)).await;
    outgoing(res, shape, &active, representation, context_value, answer_ld, link).await
}

async fn outgoing(
    res: Response,
    shape: Shape,
    active: &ActiveContext,
    representation: Representation,
    context_value: Value,
    answer_ld: bool,
    link: Option<String>,
) -> Result<Response, ApiError> {
    let is_json = header_str(res.headers(), header::CONTENT_TYPE).starts_with("application/json");
    if !res.status().is_success() || !is_json {
        return Ok(res);
    }
    let (mut parts, body) = res.into_parts();
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read the answer: {e}")))?;
    let mut v: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    translate_body(&mut v, shape, Translation::outgoing(active), representation).map_err(context_error)?;
    if answer_ld {
        match &mut v {
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(m) = item {
                        m.insert("@context".into(), context_value.clone());
                    }
                }
            }
            Value::Object(m) => {
                m.insert("@context".into(), context_value);
            }
            _ => {}
        }
        parts.headers.remove(header::LINK);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(LD_JSON));
    } else {
        let url = link.as_deref().unwrap_or(CORE_CONTEXT_URL);
        if let Ok(value) = HeaderValue::from_str(&link_header_value(url)) {
            parts.headers.insert(header::LINK, value);
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut res = Response::from_parts(parts, Body::from(body));
    if res.status() == StatusCode::NO_CONTENT {
        *res.body_mut() = Body::empty();
    }
    Ok(res)
}

/// The `@context` of a JSON-LD body (of its first entity, for a batch).
fn inline_context(body: &Value) -> Option<Value> {
    match body {
        Value::Object(m) => m.get("@context").cloned(),
        Value::Array(items) => items.first().and_then(inline_context),
        _ => None,
    }
}

fn strip_contexts(body: &mut Value) {
    match body {
        Value::Object(m) => {
            m.remove("@context");
        }
        Value::Array(items) => items.iter_mut().for_each(strip_contexts),
        _ => {}
    }
}

fn query_has(uri: &Uri, key: &str, values: &[&str]) -> bool {
    uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == key && v.split(',').any(|x| values.contains(&x.trim())))
    })
}

/// Translates a comma- or bar-separated list of names.
fn translate_list(list: &str, t: Translation<'_>) -> String {
    let mut out = String::with_capacity(list.len());
    let mut name = String::new();
    for c in list.chars() {
        if matches!(c, ',' | '|' | ';' | '(' | ')') {
            out.push_str(&t.name(name.trim()));
            name.clear();
            out.push(c);
        } else {
            name.push(c);
        }
    }
    out.push_str(&t.name(name.trim()));
    out
}

fn translate_uri(uri: &Uri, shape: Shape, t: Translation<'_>) -> Result<Uri, ApiError> {
    if t.is_identity() {
        return Ok(uri.clone());
    }
    let mut path = uri.path().to_owned();
    if matches!(shape, Shape::Attribute | Shape::Discovery) {
        let (head, last) = path.rsplit_once('/').unwrap_or(("", &path));
        let decoded = percent_decode(last);
        let renamed = t.name(&decoded);
        let is_collection = matches!(last, "types" | "attributes");
        if !is_collection {
            path = format!(
                "{head}/{}",
                url::form_urlencoded::byte_serialize(renamed.as_bytes()).collect::<String>()
            );
        }
    }
    let query = uri.query().map(|q| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| {
                let v = if NAME_PARAMETERS.contains(&k.as_ref()) {
                    translate_list(&v, t)
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            }))
            .finish()
    });
    let text = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    text.parse()
        .map_err(|e| ApiError::InvalidRequest(format!("cannot rewrite the request URL: {e}")))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// Renames the names a body holds, by what the path says it is.
fn translate_body(
    body: &mut Value,
    shape: Shape,
    t: Translation<'_>,
    representation: Representation,
) -> Result<(), ContextError> {
    if t.is_identity() {
        return Ok(());
    }
    let rename = |v: Option<&mut Value>| match v {
        Some(Value::String(s)) => *s = translate_list(s, t),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::String(s) = item {
                    *s = t.name(s).into_owned();
                }
            }
        }
        _ => {}
    };
    let rename_selectors = |v: Option<&mut Value>| {
        if let Some(Value::Array(selectors)) = v {
            for sel in selectors {
                if let Value::Object(m) = sel
                    && let Some(Value::String(ty)) = m.get_mut("type")
                {
                    *ty = translate_list(ty, t);
                }
            }
        }
    };
    let each = |body: &mut Value, f: &dyn Fn(&mut serde_json::Map<String, Value>)| match body {
        Value::Object(m) => f(m),
        Value::Array(items) => items.iter_mut().for_each(|i| {
            if let Value::Object(m) = i {
                f(m);
            }
        }),
        _ => {}
    };
    match shape {
        Shape::Entities => t.entities(body, representation)?,
        Shape::Subscriptions => each(body, &|m| {
            rename_selectors(m.get_mut("entities"));
            rename(m.get_mut("watchedAttributes"));
            if let Some(Value::Object(n)) = m.get_mut("notification") {
                rename(n.get_mut("attributes"));
            }
        }),
        Shape::Query => each(body, &|m| {
            rename_selectors(m.get_mut("entities"));
            rename(m.get_mut("attrs"));
        }),
        Shape::Discovery => each(body, &|m| {
            for key in [
                "typeList",
                "attributeList",
                "attributeNames",
                "typeNames",
                "typeName",
                "attributeName",
            ] {
                rename(m.get_mut(key));
            }
            if let Some(Value::Array(details)) = m.get_mut("attributeDetails") {
                for d in details {
                    if let Value::Object(d) = d {
                        rename(d.get_mut("attributeName"));
                    }
                }
            }
        }),
        Shape::Attribute | Shape::Other => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_shapes() {
        assert!(shape("/ngsi-ld/v1/entities") == Shape::Entities);
        assert!(shape("/ngsi-ld/v1/entities/urn:x:1/attrs/a") == Shape::Attribute);
        assert!(shape("/ngsi-ld/v1/temporal/entities/urn:x:1") == Shape::Entities);
        assert!(shape("/ngsi-ld/v1/entityOperations/query") == Shape::Query);
        assert!(shape("/ngsi-ld/v1/entityOperations/upsert") == Shape::Entities);
        assert!(shape("/ngsi-ld/v1/subscriptions/urn:x") == Shape::Subscriptions);
        assert!(shape("/ngsi-ld/v1/types/T") == Shape::Discovery);
        assert!(shape("/ngsi-ld/v1/jsonldContexts") == Shape::Other);
    }
}
