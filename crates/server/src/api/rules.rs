//! `/api/v1/rules`: the automation rules, versioned, and their dry run.
//!
//! - `GET /api/v1/rules`: every rule (file ones read-only), with its
//!   evaluation errors since start.
//! - `POST /api/v1/rules` (a rule as JSON): saved as a new rule; 201.
//! - `GET /api/v1/rules/{id}`, `GET /api/v1/rules/{id}/versions`.
//! - `PUT /api/v1/rules/{id}`: a new text, a new version; `If-Match: "N"`
//!   refuses it (412) if version N is no longer the current one.
//! - `PATCH /api/v1/rules/{id}` `{"enabled"?, "communes"?}`: switches, a new version.
//! - `DELETE /api/v1/rules/{id}`: retired (its versions stay readable); 204.
//! - `POST /api/v1/rules/validate` (a rule): 200 `{"valid": true}` or 400
//!   with `errors`: `[{field, message, line?, column?}]`.
//! - `POST /api/v1/rules/dry-run` `{"rule": {…} | "ruleId": "…", "from", "to"}`:
//!   what the rule would have done over recorded history.
//!
//! Reading needs `read-entities`; the rest `manage-rules` (global).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use vigie_core::Action;
use vigie_core::rules::{Communes, Rule};

use super::{ApiError, AppState, JsonBody};
use crate::rules::{Change, RuleEntry};
use crate::security::Caller;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rules", get(list).post(create))
        .route("/api/v1/rules/validate", post(validate))
        .route("/api/v1/rules/dry-run", post(dry_run))
        .route("/api/v1/rules/{id}", get(one).put(replace).patch(switch).delete(retire))
        .route("/api/v1/rules/{id}/versions", get(versions))
}

/// A rule entry with what the desk saw evaluating it.
fn with_errors(s: &AppState, entry: &RuleEntry) -> Value {
    let mut v = serde_json::to_value(entry).unwrap_or(Value::Null);
    if let Some(errors) = s.alarms.rule_errors(&entry.rule.id) {
        v["evaluationErrors"] = json!({"count": errors.count, "last": errors.last});
    }
    v
}

async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<Vec<Value>>, ApiError> {
    caller.check(Action::ReadEntities)?;
    Ok(Json(
        s.rulebook.list().await.iter().map(|e| with_errors(&s, e)).collect(),
    ))
}

async fn one(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let entry = s
        .rulebook
        .get(&id)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no rule '{id}'")))?;
    Ok(versioned(StatusCode::OK, &s, &entry))
}

async fn versions(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<vigie_store::RuleRecord>>, ApiError> {
    caller.check(Action::ReadEntities)?;
    let versions = s.rulebook.versions(&id).await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("no saved rule '{id}'")));
    }
    Ok(Json(versions))
}

/// The entry with its version as the `ETag` that `If-Match` takes back.
fn versioned(status: StatusCode, s: &AppState, entry: &RuleEntry) -> Response {
    (
        status,
        [(header::ETAG, format!("\"{}\"", entry.rule.version))],
        Json(with_errors(s, entry)),
    )
        .into_response()
}

/// `If-Match: "N"` (or `N`): the version the caller edited.
fn expected_version(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequestData("If-Match must be a rule version, such as \"3\"".into()))
}

async fn create(State(s): State<AppState>, caller: Caller, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    s.audit.check(&caller, Action::ManageRules, "rule.create", None).await?;
    let rule = Rule::from_json(body).map_err(ApiError::InvalidRule)?;
    let entry = s.rulebook.create(rule, &caller).await?;
    let mut response = versioned(StatusCode::CREATED, &s, &entry);
    if let Ok(location) = format!("/api/v1/rules/{}", entry.rule.id).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn replace(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    s.audit
        .check(&caller, Action::ManageRules, "rule.replace", Some(&id))
        .await?;
    let rule = Rule::from_json(body).map_err(ApiError::InvalidRule)?;
    let entry = s
        .rulebook
        .change(
            &id,
            Change::Replace(Box::new(rule)),
            expected_version(&headers)?,
            &caller,
        )
        .await?;
    Ok(versioned(StatusCode::OK, &s, &entry))
}

async fn switch(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    s.audit
        .check(&caller, Action::ManageRules, "rule.switch", Some(&id))
        .await?;
    let Some(fields) = body.as_object() else {
        return Err(ApiError::BadRequestData(
            "expected an object: {\"enabled\"?, \"communes\"?}".into(),
        ));
    };
    if let Some(other) = fields.keys().find(|k| !["enabled", "communes"].contains(&k.as_str())) {
        return Err(ApiError::BadRequestData(format!(
            "'{other}' cannot be switched: only 'enabled' and 'communes' (PUT the rule to change the rest)"
        )));
    }
    let enabled = match fields.get("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::BadRequestData("'enabled' must be true or false".into())),
    };
    let communes = fields
        .get("communes")
        .map(|v| serde_json::from_value::<Communes>(v.clone()))
        .transpose()
        .map_err(|e| ApiError::BadRequestData(format!("'communes' must be \"all\" or a list of commune slugs: {e}")))?;
    let entry = s
        .rulebook
        .change(
            &id,
            Change::Switch { enabled, communes },
            expected_version(&headers)?,
            &caller,
        )
        .await?;
    Ok(versioned(StatusCode::OK, &s, &entry))
}

async fn retire(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    s.audit
        .check(&caller, Action::ManageRules, "rule.retire", Some(&id))
        .await?;
    s.rulebook
        .change(&id, Change::Retire, expected_version(&headers)?, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn validate(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ManageRules)?;
    let rule = Rule::from_json(body).map_err(ApiError::InvalidRule)?;
    s.rulebook.validate(&rule).map_err(ApiError::InvalidRule)?;
    Ok(Json(json!({"valid": true})))
}

async fn dry_run(State(s): State<AppState>, caller: Caller, JsonBody(body): JsonBody) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ManageRules)?;
    let time = |name: &str| -> Result<vigie_core::Timestamp, ApiError> {
        let text = body
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequestData(format!("'{name}' is required: an RFC 3339 time")))?;
        text.parse()
            .map_err(|e| ApiError::BadRequestData(format!("'{name}' must be an RFC 3339 time, got '{text}': {e}")))
    };
    let (from, to) = (time("from")?, time("to")?);
    let rule = match (body.get("rule"), body.get("ruleId").and_then(Value::as_str)) {
        (Some(rule), None) => Rule::from_json(rule.clone()).map_err(ApiError::InvalidRule)?,
        (None, Some(id)) => {
            s.rulebook
                .get(id)
                .await
                .ok_or_else(|| ApiError::NotFound(format!("no rule '{id}'")))?
                .rule
        }
        _ => {
            return Err(ApiError::BadRequestData(
                "give either 'rule' (a rule to try) or 'ruleId' (a rule of the book)".into(),
            ));
        }
    };
    let report = s.rulebook.dry_run(&s.twin, rule, from, to).await?;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}
