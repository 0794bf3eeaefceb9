//! One entity: create, retrieve, replace, merge, delete, and its attributes
//! (append, update, partial update, replace, delete).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use vigie_core::ngsi;
use vigie_core::{Action, Entity};

use super::{
    Rendering, audit_personal_read, check_writable, entity_and_state, entity_id, linked_json, not_found,
    parse_attributes, parse_entity, partial_or_done, visible,
};
use crate::api::{ApiError, AppState, JsonBody, Params};
use crate::audit;
use crate::ingest::{Edit, Edited, WriteError, WriteOp};
use crate::security::Caller;

pub(super) async fn retrieve(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(&headers).await?;
    let id = entity_id(&id)?;
    let rendering = Rendering::from_params(&params)?;
    let types = params.list("type");
    let entity = visible(&s, &caller, &tenant, &id)?;
    if types.as_ref().is_some_and(|t| !t.contains(&entity.entity_type)) {
        return Err(not_found(&id));
    }
    audit_personal_read(&s, &caller, &entity).await?;
    Ok(linked_json(StatusCode::OK, rendering.render(&entity), HeaderMap::new()))
}

pub(super) async fn create(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let entity = parse_entity(&body)?;
    let id = entity.id.clone();
    s.audit
        .check_in(
            &caller,
            Action::WriteEntities,
            entity.scope.as_ref(),
            "entity.create",
            Some(id.as_str()),
        )
        .await?;
    let tenant = s.tenants.for_write(&headers).await?;
    if let Some(existing) = tenant.twin.get(entity.id.as_str())
        && !caller.sees(existing.scope.as_ref())
    {
        // Ids are global: the most this says is that the id is taken elsewhere.
        return Err(ApiError::Forbidden(format!(
            "entity {} is outside the caller's scope",
            entity.id
        )));
    }
    let location = format!("/ngsi-ld/v1/entities/{}", entity.id);
    let note = audit::entity_note(&caller, "entity.create", &id);
    tenant.ingest.write_audited(WriteOp::Create(entity), note).await?;
    let mut res = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

pub(super) async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = s.tenants.for_read(&headers).await?;
    let (id, before) = entity_and_state(&tenant, &id)?;
    check_writable(&s, &caller, "entity.delete", &id, before.as_deref()).await?;
    let note = audit::entity_note(&caller, "entity.delete", &id);
    tenant.ingest.write_audited(WriteOp::Delete(id), note).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An edit applying one of vigie-core's update rules to the entity's latest state.
fn rule(apply: impl FnOnce(&mut Entity) -> Result<ngsi::Changes, ngsi::UpdateError> + Send + 'static) -> Edit {
    Box::new(move |e: &mut Entity| {
        let id = e.id.clone();
        apply(e)
            .map(Edited::from)
            .map_err(|err| WriteError::from_update(&id, err))
    })
}

/// Runs one change to an existing entity: scope check, the write, its audit
/// record; 204, or 207 when some attributes were not written.
async fn edit(
    s: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    raw_id: &str,
    verb: &str,
    make: impl FnOnce(&Entity) -> Result<Edit, ApiError>,
) -> Result<Response, ApiError> {
    let tenant = s.tenants.for_read(headers).await?;
    let (id, before) = entity_and_state(&tenant, raw_id)?;
    check_writable(s, caller, verb, &id, before.as_deref()).await?;
    let current = before.as_deref().ok_or_else(|| not_found(&id))?;
    let edit = make(current)?;
    let note = audit::entity_note(caller, verb, &id);
    let done = tenant.ingest.write_audited(WriteOp::Edit { id, edit }, note).await?;
    Ok(partial_or_done(done))
}

pub(super) async fn append_attributes(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let attributes = parse_attributes(&body)?;
    let overwrite = !params.has_option("noOverwrite");
    edit(&s, &caller, &headers, &id, "entity.append", |_| {
        Ok(Box::new(move |e: &mut Entity| {
            let mut edited = Edited::default();
            for (name, attr) in attributes {
                if !overwrite && e.attributes.instance(&name, attr.dataset_id.as_deref()).is_some() {
                    let why = "the attribute exists and noOverwrite was asked".to_owned();
                    edited.not_updated.push((name, why));
                } else {
                    e.attributes.insert(name.clone(), attr);
                    edited.updated.push(name);
                }
            }
            Ok(edited)
        }))
    })
    .await
}

pub(super) async fn update_attributes(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let attributes = parse_attributes(&body)?;
    edit(&s, &caller, &headers, &id, "entity.update", |_| {
        Ok(Box::new(move |e: &mut Entity| {
            let mut edited = Edited::default();
            for (name, attr) in attributes {
                match e.attributes.instance_mut(&name, attr.dataset_id.as_deref()) {
                    Some(slot) => {
                        *slot = attr;
                        edited.updated.push(name);
                    }
                    None => edited
                        .not_updated
                        .push((name, "the entity has no such attribute (instance)".to_owned())),
                }
            }
            Ok(edited)
        }))
    })
    .await
}

/// The body of a replace or merge: an entity fragment whose `id`, when
/// given, is the path's, and whose `type` defaults to the entity's.
fn fragment(body: Value, current: &Entity) -> Result<Entity, ApiError> {
    let Value::Object(mut obj) = body else {
        return Err(ApiError::BadRequestData(
            "the body must be a JSON object (an entity fragment)".into(),
        ));
    };
    match obj.get("id").and_then(Value::as_str) {
        Some(id) if id != current.id.as_str() => {
            return Err(ApiError::BadRequestData(format!(
                "the body's id {id} is not the entity's ({})",
                current.id
            )));
        }
        _ => {}
    }
    obj.insert("id".into(), Value::String(current.id.to_string()));
    obj.entry("type")
        .or_insert_with(|| Value::String(current.entity_type.clone()));
    parse_entity(&Value::Object(obj))
}

/// PUT /entities/{id}: everything but the id and the creation time is replaced.
pub(super) async fn replace(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    edit(&s, &caller, &headers, &id, "entity.replace", |current| {
        let mut new = fragment(body, current)?;
        // Replacing moves an entity only within the caller's scope; an entity
        // sent without a scope keeps the one it has.
        if new.scope.is_none() {
            new.scope.clone_from(&current.scope);
        }
        if !caller.sees(new.scope.as_ref()) {
            return Err(ApiError::Forbidden(format!(
                "the new scope of {} is outside the caller's grant",
                current.id
            )));
        }
        Ok(rule(move |e| ngsi::replace_entity(e, new)))
    })
    .await
}

/// PATCH /entities/{id}: merges a fragment (5.6.17).
pub(super) async fn merge(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let options = ngsi::MergeOptions {
        observed_at: params
            .get("observedAt")
            .map(|t| {
                t.parse()
                    .map_err(|_| ApiError::BadRequestData(format!("observedAt '{t}' is not an RFC 3339 time")))
            })
            .transpose()?,
        lang: params.get("lang").map(str::to_owned),
    };
    edit(&s, &caller, &headers, &id, "entity.merge", |current| {
        // Checked here for its scope; merged as sent.
        let checked = fragment(body.clone(), current)?;
        if checked.scope.is_some() && !caller.sees(checked.scope.as_ref()) {
            return Err(ApiError::Forbidden(format!(
                "the new scope of {} is outside the caller's grant",
                current.id
            )));
        }
        Ok(rule(move |e| ngsi::merge_entity(e, &body, &options)))
    })
    .await
}

/// PATCH /entities/{id}/attrs/{attr}: the members given replace the
/// attribute's, the others stay; a member set to `urn:ngsi-ld:null` goes.
pub(super) async fn partial_attribute_update(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    edit(&s, &caller, &headers, &id, "entity.attribute-update", |_| {
        Ok(rule(move |e| ngsi::update_attribute(e, &attr, &body)))
    })
    .await
}

/// PUT /entities/{id}/attrs/{attr}: the attribute, which must exist, is replaced.
pub(super) async fn replace_attribute(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    edit(&s, &caller, &headers, &id, "entity.attribute-replace", |_| {
        Ok(rule(move |e| ngsi::replace_attribute(e, &attr, &body)))
    })
    .await
}

/// DELETE /entities/{id}/attrs/{attr}: `datasetId` names the instance.
pub(super) async fn delete_attribute(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let target = ngsi::InstanceTarget::from_params(params.get("datasetId"), params.get("deleteAll") == Some("true"));
    edit(&s, &caller, &headers, &id, "entity.attribute-delete", |_| {
        Ok(rule(move |e| ngsi::delete_attribute(e, &attr, &target)))
    })
    .await
}
