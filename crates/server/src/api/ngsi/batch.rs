//! Batch operations (`/entityOperations/{create,upsert,update,merge,delete}`):
//! up to [`MAX_BATCH`] entities, each succeeding or failing on its own.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vigie_core::{Action, Entity, EntityId};

use super::{MAX_BATCH, entity_id, parse_entity};
use crate::api::{ApiError, AppState, JsonBody, Params};
use crate::audit;
use crate::ingest::{BatchKind, WriteOp, WriteOutcome};
use crate::security::Caller;
use crate::tenants::Tenant;

/// The items of a batch body, bounded.
fn items(body: &Value) -> Result<&[Value], ApiError> {
    let items = body
        .as_array()
        .ok_or_else(|| ApiError::BadRequestData("a batch body must be a JSON array".into()))?;
    if items.len() > MAX_BATCH {
        return Err(ApiError::BadRequestData(format!(
            "{} items in one batch; at most {MAX_BATCH}",
            items.len()
        )));
    }
    Ok(items)
}

/// One failed item of a batch, as `BatchEntityError`.
fn failure(id: impl Into<Value>, error: &ApiError) -> Value {
    json!({"entityId": id.into(), "error": error.problem()})
}

/// Parses a batch of entities; those that do not parse are reported, not
/// fatal. For updates and merges the type may be left out: the entity's
/// current type is meant.
fn parse_batch(tenant: &Tenant, body: &Value, type_optional: bool) -> Result<(Vec<Entity>, Vec<Value>), ApiError> {
    let items = items(body)?;
    let mut entities = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for item in items {
        let mut item = item.clone();
        if type_optional
            && let Value::Object(obj) = &mut item
            && !obj.contains_key("type")
            && let Some(current) = obj.get("id").and_then(Value::as_str).and_then(|id| tenant.twin.get(id))
        {
            obj.insert("type".into(), Value::String(current.entity_type.clone()));
        }
        match parse_entity(&item) {
            Ok(e) => entities.push(e),
            Err(err) => errors.push(failure(item.get("id").cloned().unwrap_or(Value::Null), &err)),
        }
    }
    Ok((entities, errors))
}

/// 201 with the created ids when all were created, 204 when all succeeded
/// (some updated), 207 with a BatchOperationResult when any failed.
fn answer(outcome: WriteOutcome, mut errors: Vec<Value>, created_answers_201: bool) -> Result<Response, ApiError> {
    let WriteOutcome::Batch(results) = outcome else {
        return Err(ApiError::Internal(
            "a batch write answered with a non-batch outcome".into(),
        ));
    };
    let mut success = Vec::new();
    let mut all_created = true;
    for (id, result) in results {
        match result {
            Ok(created) => {
                all_created &= created;
                success.push(Value::String(id.to_string()));
            }
            Err(e) => errors.push(failure(id.to_string(), &ApiError::from(e))),
        }
    }
    Ok(if !errors.is_empty() {
        (
            StatusCode::MULTI_STATUS,
            Json(json!({"success": success, "errors": errors})),
        )
            .into_response()
    } else if created_answers_201 && all_created {
        (StatusCode::CREATED, Json(Value::Array(success))).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn run_batch(
    s: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    kind: BatchKind,
    body: &Value,
) -> Result<Response, ApiError> {
    let (action, _) = kind.audit_labels();
    s.audit.check(caller, Action::WriteEntities, action, None).await?;
    let creates = matches!(
        kind,
        BatchKind::Create | BatchKind::UpsertReplace | BatchKind::UpsertUpdate
    );
    let tenant = if creates {
        s.tenants.for_write(headers).await?
    } else {
        s.tenants.for_read(headers).await?
    };
    let (entities, mut errors) = parse_batch(&tenant, body, !creates)?;
    // Each entity, as sent and as it is now, must be in the caller's scope;
    // the others are reported and not written.
    let (entities, refused): (Vec<Entity>, Vec<Entity>) = entities.into_iter().partition(|e| {
        let now = tenant.twin.get(e.id.as_str());
        caller.sees(e.scope.as_ref()) && now.is_none_or(|n| caller.sees(n.scope.as_ref()))
    });
    for e in refused {
        errors.push(failure(e.id.to_string(), &out_of_scope(&e.id)));
    }
    let outcome = if entities.is_empty() {
        s.audit.batch_refused(caller, kind.audit_labels(), errors.len()).await?;
        WriteOutcome::Batch(vec![])
    } else {
        let note = audit::batch_note(caller, kind.audit_labels(), errors.len());
        tenant
            .ingest
            .write_audited(WriteOp::Batch { kind, entities }, note)
            .await?
    };
    answer(outcome, errors, creates)
}

fn out_of_scope(id: &EntityId) -> ApiError {
    ApiError::Forbidden(format!(
        "entity {id} is outside what the caller may change (its scope, or personal data)"
    ))
}

pub(super) async fn create(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    run_batch(&s, &caller, &headers, BatchKind::Create, &body).await
}

pub(super) async fn upsert(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let kind = if params.has_option("update") {
        BatchKind::UpsertUpdate
    } else {
        BatchKind::UpsertReplace
    };
    run_batch(&s, &caller, &headers, kind, &body).await
}

pub(super) async fn update(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let overwrite = !params.has_option("noOverwrite");
    run_batch(&s, &caller, &headers, BatchKind::Update { overwrite }, &body).await
}

pub(super) async fn merge(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    run_batch(&s, &caller, &headers, BatchKind::Merge, &body).await
}

/// The body is an array of entity ids.
pub(super) async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    const LABELS: (&str, &str) = ("entity.batch-delete", "delete");
    s.audit.check(&caller, Action::WriteEntities, LABELS.0, None).await?;
    let tenant = s.tenants.for_read(&headers).await?;
    let mut errors = Vec::new();
    let mut ids = Vec::new();
    for item in items(&body)? {
        let parsed = item
            .as_str()
            .ok_or_else(|| ApiError::BadRequestData("a batch delete holds entity ids (strings)".into()))
            .and_then(entity_id);
        match parsed {
            Err(e) => errors.push(failure(item.clone(), &e)),
            // Out of sight reads as missing, out of the grant as refused.
            Ok(id) => match tenant.twin.get(id.as_str()) {
                Some(e) if !s.security.sees(&caller, e.scope.as_ref()) => {
                    errors.push(failure(id.to_string(), &super::not_found(&id)));
                }
                Some(e) if !caller.sees(e.scope.as_ref()) => errors.push(failure(id.to_string(), &out_of_scope(&id))),
                _ => ids.push(id),
            },
        }
    }
    let outcome = if ids.is_empty() {
        s.audit.batch_refused(&caller, LABELS, errors.len()).await?;
        WriteOutcome::Batch(vec![])
    } else {
        let note = audit::batch_note(&caller, LABELS, errors.len());
        tenant.ingest.write_audited(WriteOp::BatchDelete(ids), note).await?
    };
    answer(outcome, errors, false)
}
