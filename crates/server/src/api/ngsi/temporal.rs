//! The temporal API (5.7.3–5.7.4, 6.18–6.22): entities' history as
//! instances, simplified values or aggregates per period, read from the
//! store (every HTTP write and MQTT reading is an instance), bounded and
//! paged with 206 + `Content-Range`.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use vigie_core::entity::format_timestamp;
use vigie_core::ngsi::temporal::{
    TemporalError, TemporalParams, TemporalQuery, TemporalRepresentation, TimeProperty, render_aggregated,
    render_instances,
};
use vigie_core::{Action, Attribute, Entity, EntityId, Observation, Timestamp};
use vigie_store::{HistorySelection, Truncation};

use super::query::{EntityQuery, Paging, select};
use super::{audit_personal_read, entity_id, linked_json, visible};
use crate::api::{ApiError, AppState, JsonBody, Params};
use crate::ingest::{WriteOp, WriteOutcome};
use crate::security::Caller;
use crate::tenants::Tenant;

/// Most aggregated values one answer may hold (per attribute).
const MAX_AGGREGATE_VALUES: usize = 1_000_000;

fn temporal_error(e: TemporalError) -> ApiError {
    match e {
        TemporalError::TooManyPeriods { .. } => ApiError::TooComplexQuery(e.to_string()),
        TemporalError::Invalid { .. } => ApiError::BadRequestData(e.to_string()),
    }
}

fn temporal_query<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Result<TemporalQuery, ApiError> {
    let q = TemporalQuery::parse(&TemporalParams::from_lookup(lookup)).map_err(temporal_error)?;
    if q.time_property != TimeProperty::ObservedAt {
        return Err(ApiError::OperationNotSupported(
            "history is kept by observedAt only: timeproperty createdAt and modifiedAt are not supported".into(),
        ));
    }
    Ok(q)
}

/// The temporal representation of `entities`, and where the page was cut.
async fn history(
    s: &AppState,
    tenant: &Tenant,
    entities: &[std::sync::Arc<Entity>],
    attrs: Option<Vec<String>>,
    q: &TemporalQuery,
) -> Result<(Vec<Value>, Option<Truncation>), ApiError> {
    if entities.is_empty() {
        return Ok((Vec::new(), None));
    }
    let (from, to) = q.bounds();
    // Without `attrs`, the attributes the entities have: naming them lets the
    // store seek each series instead of scanning every point for its names.
    let attributes = attrs.unwrap_or_else(|| {
        let names: std::collections::BTreeSet<&String> = entities.iter().flat_map(|e| e.attributes.keys()).collect();
        names.into_iter().cloned().collect()
    });
    let selection = HistorySelection {
        entity_ids: entities.iter().map(|e| e.id.clone()).collect(),
        attributes: Some(attributes),
        from,
        to,
    };
    let store = &tenant.store;
    let internal = |e: vigie_store::StoreError| ApiError::Internal(e.to_string());
    match &q.representation {
        TemporalRepresentation::Aggregated(aggregation) => {
            let extent = if q.needs_extent() {
                store.history_extent(&selection).await.map_err(internal)?
            } else {
                None
            };
            let periods = q.periods(extent).map_err(temporal_error)?;
            // Each entity × attribute × period × method is one value of the answer.
            let cells = periods.len() * entities.len() * aggregation.methods.len();
            if cells > MAX_AGGREGATE_VALUES {
                return Err(ApiError::TooComplexQuery(format!(
                    "{} periods × {} entities × {} methods is {cells} values, more than {MAX_AGGREGATE_VALUES}: \
                     narrow the time range, lengthen aggrPeriodDuration or page with a smaller limit",
                    periods.len(),
                    entities.len(),
                    aggregation.methods.len()
                )));
            }
            let aggregates = store
                .history_aggregate(&selection, &periods, &aggregation.methods)
                .await
                .map_err(internal)?;
            let by_id: HashMap<&EntityId, _> = aggregates.iter().map(|a| (&a.entity_id, &a.attributes)).collect();
            let out = entities
                .iter()
                .map(|e| {
                    let attributes = by_id.get(&e.id).map(|a| a.as_slice()).unwrap_or_default();
                    render_aggregated(e, attributes, &periods, &aggregation.methods, q.last_n)
                })
                .collect();
            Ok((out, None))
        }
        representation => {
            let values = *representation == TemporalRepresentation::TemporalValues;
            let range = store
                .history_range(&selection, q.last_n, s.config.api.max_page_size.max(1))
                .await
                .map_err(internal)?;
            let by_id: HashMap<&EntityId, _> = range.entities.iter().map(|h| (&h.entity_id, &h.attributes)).collect();
            let mut out = Vec::with_capacity(entities.len());
            for e in entities {
                let attributes = by_id.get(&e.id).map(|a| a.as_slice()).unwrap_or_default();
                out.push(render_instances(e, attributes, values));
            }
            Ok((out, range.truncation))
        }
    }
}

/// 200, or 206 with `Content-Range` when instances were left out (6.3.10).
fn answer(body: Value, truncation: Option<Truncation>, q: &TemporalQuery, mut extra: HeaderMap) -> Response {
    let Some(cut) = truncation else {
        return linked_json(StatusCode::OK, body, extra);
    };
    let (from, to) = q.bounds();
    let range = match cut {
        Truncation::CompleteUntil(t) => format!(
            "date-time {}-{}/*",
            from.map(format_timestamp).unwrap_or_default(),
            format_timestamp(t)
        ),
        Truncation::CompleteFrom(t) => format!(
            "date-time {}-{}/*",
            format_timestamp(t),
            to.map(format_timestamp).unwrap_or_default()
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&range) {
        extra.insert(header::CONTENT_RANGE, v);
    }
    linked_json(StatusCode::PARTIAL_CONTENT, body, extra)
}

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
    let q = temporal_query(|k| params.get(k))?;
    let entity = visible(&s, &caller, &tenant, &id)?;
    audit_personal_read(&s, &caller, &entity).await?;
    let (mut out, cut) = history(&s, &tenant, &[entity], params.list("attrs"), &q).await?;
    let body = out.pop().unwrap_or(Value::Null);
    Ok(answer(body, cut, &q, HeaderMap::new()))
}

pub(super) async fn query(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(&headers).await?;
    let q = temporal_query(|k| params.get(k))?;
    let paging = Paging::from_params(&s, &params)?;
    let attrs = params.list("attrs");
    let query = EntityQuery::from_params(&params, attrs.clone())?;
    run(&s, &caller, &tenant, &query, &paging, attrs, &q).await
}

/// `POST /temporal/entityOperations/query`: a Query body whose `temporalQ`
/// holds the time parameters.
pub(super) async fn post_query(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
    JsonBody(mut body): JsonBody,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(&headers).await?;
    let temporal = body
        .as_object_mut()
        .and_then(|m| m.remove("temporalQ"))
        .unwrap_or(Value::Null);
    let member = |k: &str| -> Option<String> {
        match temporal.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let timerel = member("timerel");
    let time_at = member("timeAt");
    let end_time_at = member("endTimeAt");
    let last_n = member("lastN");
    let timeproperty = member("timeproperty");
    let q = temporal_query(|k| match k {
        "timerel" => timerel.as_deref(),
        "timeAt" => time_at.as_deref(),
        "endTimeAt" => end_time_at.as_deref(),
        "lastN" => last_n.as_deref(),
        "timeproperty" => timeproperty.as_deref(),
        other => params.get(other),
    })?;
    let paging = Paging::from_params(&s, &params)?;
    let query = EntityQuery::from_body(&body, params.list("attrs"))?;
    let attrs = query.attrs.clone();
    run(&s, &caller, &tenant, &query, &paging, attrs, &q).await
}

async fn run(
    s: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    query: &EntityQuery,
    paging: &Paging,
    attrs: Option<Vec<String>>,
    q: &TemporalQuery,
) -> Result<Response, ApiError> {
    let page = select(s, caller, tenant, query, paging).await?;
    let (out, cut) = history(s, tenant, &page.entities, attrs, q).await?;
    let mut extra = HeaderMap::new();
    if let Some(total) = page.total {
        extra.insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(answer(Value::Array(out), cut, q, extra))
}

/// Most instances in one temporal write.
const MAX_INSTANCES: usize = 10_000;

/// The instances of a temporal body (`{attr: [instance, …]}`), as
/// observations of entity `id`; an instance without `observedAt` is of now.
fn instances(id: &EntityId, body: &serde_json::Map<String, Value>) -> Result<Vec<Observation>, ApiError> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    for (name, value) in body {
        if matches!(
            name.as_str(),
            "id" | "type" | "scope" | "@context" | "createdAt" | "modifiedAt"
        ) {
            continue;
        }
        let items = match value {
            Value::Array(items) => items.as_slice(),
            one => std::slice::from_ref(one),
        };
        for item in items {
            let attr = Attribute::from_normalized(name, item).map_err(ApiError::BadRequestData)?;
            out.push(Observation {
                entity_id: id.clone(),
                attribute: name.clone(),
                value: attr.value,
                observed_at: attr.observed_at.unwrap_or(now),
                unit_code: attr.unit_code,
            });
            if out.len() > MAX_INSTANCES {
                return Err(ApiError::BadRequestData(format!(
                    "more than {MAX_INSTANCES} instances in one temporal write"
                )));
            }
        }
    }
    Ok(out)
}

/// Runs a temporal write: scope checks, the write, its audit record.
async fn observe(
    s: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    entity: Entity,
    observations: Vec<Observation>,
    create: bool,
) -> Result<Response, ApiError> {
    let id = entity.id.clone();
    let before = tenant.twin.get(id.as_str());
    super::check_writable(s, caller, "entity.temporal-write", &id, before.as_deref()).await?;
    if before.is_none() && !caller.sees(entity.scope.as_ref()) {
        return Err(ApiError::Forbidden(format!(
            "entity {id} would be outside the caller's scope"
        )));
    }
    let op = WriteOp::Observe {
        entity,
        observations,
        create,
    };
    let note = crate::audit::entity_note(caller, "entity.temporal-write", &id);
    let status = match tenant.ingest.write_audited(op, note).await? {
        WriteOutcome::Created => StatusCode::CREATED,
        _ => StatusCode::NO_CONTENT,
    };
    let mut res = status.into_response();
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/temporal/entities/{id}"))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `POST /temporal/entities`: creates the entity or adds instances to it
/// (201 created, 204 updated).
pub(super) async fn create_or_update(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let Value::Object(obj) = &body else {
        return Err(ApiError::BadRequestData(
            "a temporal entity must be a JSON object".into(),
        ));
    };
    let id = entity_id(obj.get("id").and_then(Value::as_str).unwrap_or(""))?;
    let entity_type = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequestData("the temporal entity has no 'type'".into()))?;
    let scope = match obj.get("scope").and_then(Value::as_str) {
        Some(s) => Some(vigie_core::Scope::from_ngsi(s).map_err(|e| ApiError::BadRequestData(e.to_string()))?),
        None => None,
    };
    let observations = instances(&id, obj)?;
    let tenant = s.tenants.for_write(&headers).await?;
    observe(
        &s,
        &caller,
        &tenant,
        Entity::new(id, entity_type, scope),
        observations,
        true,
    )
    .await
}

/// `POST /temporal/entities/{id}/attrs`: adds instances to an existing entity.
pub(super) async fn append(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let Value::Object(obj) = &body else {
        return Err(ApiError::BadRequestData(
            "the body must be a JSON object of attribute instances".into(),
        ));
    };
    let id = entity_id(&id)?;
    let tenant = s.tenants.for_read(&headers).await?;
    let current = visible(&s, &caller, &tenant, &id)?;
    let observations = instances(&id, obj)?;
    let template = Entity::new(id, current.entity_type.clone(), current.scope.clone());
    observe(&s, &caller, &tenant, template, observations, false).await
}
