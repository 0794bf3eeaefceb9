//! NGSI-LD entities: create, read, query, append/update attributes, delete,
//! and batch create/upsert (ETSI GS CIM 009).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use vigie_core::entity::Normalized;
use vigie_core::ngsi::{self, GeoQuery, GeoQueryError, Query, QueryError, ScopeQuery};
use vigie_core::{Action, Attribute, Entity, EntityId};

use super::{ApiError, AppState, JsonBody, Params};
use crate::audit;
use crate::ingest::{BatchKind, WriteOp, WriteOutcome};
use crate::security::Caller;
use crate::twin::Candidates;
use vigie_core::audit::AuditEvent;

/// The NGSI-LD core context.
macro_rules! core_context {
    () => {
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    };
}
/// The `Link` header naming the NGSI-LD core context on every `application/json` answer.
const CORE_CONTEXT_LINK: &str = concat!(
    "<",
    core_context!(),
    ">; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
);
/// Most entities in one batch operation.
const MAX_BATCH: usize = 1_000;
/// Longest regular expression accepted in `idPattern`.
const MAX_PATTERN_BYTES: usize = 1_024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ngsi-ld/v1/entities", get(query_entities).post(create_entity))
        .route("/ngsi-ld/v1/entities/{id}", get(retrieve_entity).delete(delete_entity))
        .route(
            "/ngsi-ld/v1/entities/{id}/attrs",
            post(append_attributes).patch(update_attributes),
        )
        .route("/ngsi-ld/v1/entityOperations/create", post(batch_create))
        .route("/ngsi-ld/v1/entityOperations/upsert", post(batch_upsert))
}

fn entity_id(raw: &str) -> Result<EntityId, ApiError> {
    EntityId::new(raw).map_err(|e| ApiError::BadRequestData(e.to_string()))
}

/// How an entity is rendered: which attributes, which form.
struct Rendering {
    /// `attrs`: the attributes shown (and, in a query, required: one at least).
    attrs: Option<Vec<String>>,
    /// `pick` / `omit`: members kept or removed, nothing more.
    pick: Option<Vec<String>>,
    omit: Option<Vec<String>>,
    key_values: bool,
    sys_attrs: bool,
}

impl Rendering {
    fn from_params(p: &Params) -> Result<Self, ApiError> {
        if let Some(format) = p.get("format")
            && !matches!(format, "keyValues" | "simplified" | "normalized")
        {
            return Err(ApiError::BadRequestData(format!("unknown format '{format}'")));
        }
        let (pick, omit) = (p.list("pick"), p.list("omit"));
        if pick.is_some() && omit.is_some() {
            return Err(ApiError::BadRequestData("pick and omit cannot be used together".into()));
        }
        let key_values = p.has_option("keyValues")
            || p.has_option("simplified")
            || matches!(p.get("format"), Some("keyValues" | "simplified"));
        Ok(Self {
            attrs: p.list("attrs"),
            pick,
            omit,
            key_values,
            sys_attrs: p.has_option("sysAttrs"),
        })
    }

    fn render<'a>(&self, e: &'a Entity) -> Rendered<'a> {
        let shaped = self.key_values || self.attrs.is_some() || self.pick.is_some() || self.omit.is_some();
        if !shaped {
            return Rendered::Normalized(e.normalized(self.sys_attrs));
        }
        let mut v = if self.key_values {
            ngsi::key_values(e)
        } else {
            e.to_normalized(self.sys_attrs)
        };
        if let (Some(attrs), Value::Object(m)) = (&self.attrs, &mut v) {
            m.retain(|k, _| matches!(k.as_str(), "id" | "type" | "scope") || attrs.iter().any(|a| a == k));
        }
        ngsi::project(&mut v, self.pick.as_deref(), self.omit.as_deref());
        Rendered::Shaped(v)
    }
}

/// A rendered entity: the plain normalized form is serialized straight from
/// the twin's entity (the common case: reads by id); others go through a `Value`.
enum Rendered<'a> {
    Normalized(Normalized<'a>),
    Shaped(Value),
}

impl Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Normalized(n) => n.serialize(s),
            Self::Shaped(v) => v.serialize(s),
        }
    }
}

fn query_error(parameter: &str, e: QueryError) -> ApiError {
    match e {
        QueryError::TooComplex { .. } => ApiError::TooComplexQuery(format!("{parameter}: {e}")),
        QueryError::Syntax { .. } => ApiError::BadRequestData(format!("invalid {parameter}: {e}")),
    }
}

/// The geo-query of a request, if it has one: `georel`, `geometry` and
/// `coordinates` go together.
fn geo_query(p: &Params) -> Result<Option<GeoQuery>, ApiError> {
    let (georel, geometry, coordinates) = (p.get("georel"), p.get("geometry"), p.get("coordinates"));
    match (georel, geometry, coordinates) {
        (None, None, None) => Ok(None),
        (Some(georel), Some(geometry), Some(coordinates)) => {
            GeoQuery::parse(georel, geometry, coordinates, p.get("geoproperty"))
                .map(Some)
                .map_err(|e| match e {
                    GeoQueryError::TooComplex { .. } => ApiError::TooComplexQuery(e.to_string()),
                    _ => ApiError::BadRequestData(e.to_string()),
                })
        }
        _ => Err(ApiError::BadRequestData(
            "a geo-query needs georel, geometry and coordinates together".into(),
        )),
    }
}

/// JSON with the core context linked, as NGSI-LD asks for `application/json`.
fn linked_json(status: StatusCode, body: impl Serialize, extra: HeaderMap) -> Response {
    let mut res = (status, extra, Json(body)).into_response();
    res.headers_mut()
        .insert(header::LINK, HeaderValue::from_static(CORE_CONTEXT_LINK));
    res
}

/// An entity out of the caller's sight is answered exactly like one that
/// does not exist, so ids leak nothing.
fn not_found(id: &EntityId) -> ApiError {
    ApiError::NotFound(format!("entity {id} does not exist"))
}

/// Whether the caller may change the entity `id` (its state `current`): 403
/// (audited) when its scope is outside the grant.
/// Writes follow the grant only: the personal-data rule hides entities from
/// reads (an administrator provisions cameras without seeing them).
async fn check_writable(
    s: &AppState,
    caller: &Caller,
    verb: &str,
    id: &EntityId,
    current: Option<&Entity>,
) -> Result<(), ApiError> {
    s.audit
        .check(caller, Action::WriteEntities, verb, Some(id.as_str()))
        .await?;
    match current {
        Some(current) => {
            s.audit
                .check_in(
                    caller,
                    Action::WriteEntities,
                    current.scope.as_ref(),
                    verb,
                    Some(id.as_str()),
                )
                .await
        }
        // The writer answers 404, and the failed attempt is audited.
        None => Ok(()),
    }
}

async fn retrieve_entity(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let id = entity_id(&id)?;
    let rendering = Rendering::from_params(&params)?;
    let entity = s
        .twin
        .get(id.as_str())
        .filter(|e| s.security.sees(&caller, e.scope.as_ref()))
        .ok_or_else(|| not_found(&id))?;
    if s.security.is_personal(entity.scope.as_ref()) {
        s.audit
            .record(AuditEvent {
                target: Some(id.to_string()),
                ..audit::event(&caller, "personal-data.read")
            })
            .await?;
    }
    Ok(linked_json(StatusCode::OK, rendering.render(&entity), HeaderMap::new()))
}

async fn query_entities(State(s): State<AppState>, caller: Caller, params: Params) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let api = &s.config.api;
    let limit = params.usize("limit")?.unwrap_or(api.default_page_size);
    if limit > api.max_page_size {
        return Err(ApiError::TooManyResults(format!(
            "limit {limit} exceeds the maximum page size {}; page with offset",
            api.max_page_size
        )));
    }
    let offset = params.usize("offset")?.unwrap_or(0);
    let count = params.get("count") == Some("true") || params.has_option("count");
    let rendering = Rendering::from_params(&params)?;

    let types = params.list("type");
    let ids = params
        .list("id")
        .map(|ids| ids.iter().map(|i| entity_id(i)).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    let id_pattern = params
        .get("idPattern")
        .map(|p| {
            regex::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .ok()
                .filter(|_| p.len() <= MAX_PATTERN_BYTES)
                .ok_or_else(|| ApiError::BadRequestData(format!("idPattern '{p}' is not a valid regular expression")))
        })
        .transpose()?;
    if params.get("csf").is_some() {
        return Err(ApiError::OperationNotSupported(
            "'csf' (context source filter) is not supported".into(),
        ));
    }
    let q = params
        .get("q")
        .map(Query::parse)
        .transpose()
        .map_err(|e| query_error("q", e))?;
    let scope_q = params
        .get("scopeQ")
        .map(ScopeQuery::parse)
        .transpose()
        .map_err(|e| query_error("scopeQ", e))?;
    let geo = geo_query(&params)?;
    if types.is_none()
        && ids.is_none()
        && id_pattern.is_none()
        && rendering.attrs.is_none()
        && q.is_none()
        && geo.is_none()
        && scope_q.is_none()
    {
        return Err(ApiError::BadRequestData(
            "a query needs at least one of type, id, idPattern, attrs, q, scopeQ or georel".into(),
        ));
    }
    let attrs = rendering.attrs.clone();
    // Out-of-sight entities are filtered before paging and counting.
    // Sight is checked last: only entities the query matches pay for it.
    let sees_all = s.security.sees_everything(&caller);
    let filter = |e: &Entity| {
        types.as_ref().is_none_or(|t| t.contains(&e.entity_type))
            && id_pattern.as_ref().is_none_or(|re| re.is_match(e.id.as_str()))
            && attrs
                .as_ref()
                .is_none_or(|a| a.iter().any(|a| e.attributes.contains_key(a)))
            && scope_q.as_ref().is_none_or(|s| s.matches(e))
            && q.as_ref().is_none_or(|q| q.matches(e))
            && geo.as_ref().is_none_or(|g| g.matches(e))
            && (sees_all || s.security.sees(&caller, e.scope.as_ref()))
    };
    // The spatial index holds `location`: a geo-query on it starts from the
    // entities in its bounding box rather than from every entity.
    let area = geo
        .as_ref()
        .filter(|g| g.geoproperty == "location")
        .and_then(GeoQuery::bounding_box);
    let candidates = match (&ids, area) {
        (Some(ids), _) => Candidates::Ids(ids),
        (None, Some((min, max))) => Candidates::Area { min, max },
        (None, None) => Candidates::All,
    };
    let page = s.twin.select(candidates, &filter, offset, limit, count);
    let personal: Vec<&str> = page
        .entities
        .iter()
        .filter(|e| s.security.is_personal(e.scope.as_ref()))
        .map(|e| e.id.as_str())
        .collect();
    if !personal.is_empty() {
        s.audit
            .record(AuditEvent {
                after: Some(json!({ "entities": personal })),
                ..audit::event(&caller, "personal-data.read")
            })
            .await?;
    }
    let body: Vec<Rendered<'_>> = page.entities.iter().map(|e| rendering.render(e)).collect();
    let mut headers = HeaderMap::new();
    if let Some(total) = page.total {
        headers.insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    Ok(linked_json(StatusCode::OK, body, headers))
}

fn parse_entity(v: &Value) -> Result<Entity, ApiError> {
    Entity::from_normalized(v).map_err(ApiError::BadRequestData)
}

fn parse_attributes(v: &Value) -> Result<BTreeMap<String, Attribute>, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::BadRequestData("the body must be a JSON object of attributes".into()))?;
    obj.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "@context" | "id" | "type"))
        .map(|(k, v)| Attribute::from_normalized(k, v).map(|a| (k.clone(), a)))
        .collect::<Result<_, _>>()
        .map_err(ApiError::BadRequestData)
}

async fn create_entity(
    State(s): State<AppState>,
    caller: Caller,
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
    if let Some(existing) = s.twin.get(entity.id.as_str())
        && !caller.sees(existing.scope.as_ref())
    {
        // Ids are global: the most this says is that the id is taken elsewhere.
        return Err(ApiError::Forbidden(format!(
            "entity {} is outside the caller's scope",
            entity.id
        )));
    }
    let location = format!("/ngsi-ld/v1/entities/{}", entity.id);
    let result = s.ingest.write(WriteOp::Create(entity)).await;
    s.audit
        .entity_write(&s.twin, &caller, "entity.create", &id, None, &result)
        .await?;
    result?;
    let mut res = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

async fn delete_entity(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (id, before) = entity_and_state(&s, &id)?;
    check_writable(&s, &caller, "entity.delete", &id, before.as_deref()).await?;
    let result = s.ingest.write(WriteOp::Delete(id.clone())).await;
    s.audit
        .entity_write(&s.twin, &caller, "entity.delete", &id, before, &result)
        .await?;
    result?;
    Ok(StatusCode::NO_CONTENT)
}

fn partial_or_done(outcome: WriteOutcome) -> Response {
    match outcome {
        WriteOutcome::Partial { updated, not_updated } => {
            let not_updated: Vec<Value> = not_updated
                .into_iter()
                .map(|(name, reason)| json!({"attributeName": name, "reason": reason}))
                .collect();
            (
                StatusCode::MULTI_STATUS,
                Json(json!({"updated": updated, "notUpdated": not_updated})),
            )
                .into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn append_attributes(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (id, before) = entity_and_state(&s, &id)?;
    check_writable(&s, &caller, "entity.append", &id, before.as_deref()).await?;
    let op = WriteOp::Append {
        id: id.clone(),
        attributes: parse_attributes(&body)?,
        overwrite: !params.has_option("noOverwrite"),
    };
    let result = s.ingest.write(op).await;
    s.audit
        .entity_write(&s.twin, &caller, "entity.append", &id, before, &result)
        .await?;
    Ok(partial_or_done(result?))
}

async fn update_attributes(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (id, before) = entity_and_state(&s, &id)?;
    check_writable(&s, &caller, "entity.update", &id, before.as_deref()).await?;
    let op = WriteOp::Update {
        id: id.clone(),
        attributes: parse_attributes(&body)?,
    };
    let result = s.ingest.write(op).await;
    s.audit
        .entity_write(&s.twin, &caller, "entity.update", &id, before, &result)
        .await?;
    Ok(partial_or_done(result?))
}

/// The entity id of a path, and the entity's state before a write (for the audit trail).
fn entity_and_state(s: &AppState, raw: &str) -> Result<(EntityId, Option<std::sync::Arc<Entity>>), ApiError> {
    let id = entity_id(raw)?;
    let before = s.twin.get(id.as_str());
    Ok((id, before))
}

/// Parses a batch body; entities that do not parse are reported, not fatal.
fn parse_batch(body: &Value) -> Result<(Vec<Entity>, Vec<Value>), ApiError> {
    let items = body
        .as_array()
        .ok_or_else(|| ApiError::BadRequestData("a batch body must be a JSON array of entities".into()))?;
    if items.len() > MAX_BATCH {
        return Err(ApiError::BadRequestData(format!(
            "{} entities in one batch; at most {MAX_BATCH}",
            items.len()
        )));
    }
    let mut entities = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for item in items {
        match parse_entity(item) {
            Ok(e) => entities.push(e),
            Err(err) => errors.push(json!({
                "entityId": item.get("id").cloned().unwrap_or(Value::Null),
                "error": err.problem(),
            })),
        }
    }
    Ok((entities, errors))
}

/// 201 with the created ids when all were created, 204 when all succeeded
/// (some updated), 207 with a BatchOperationResult when any failed.
async fn run_batch(s: &AppState, caller: &Caller, kind: BatchKind, body: &Value) -> Result<Response, ApiError> {
    s.audit
        .check(caller, Action::WriteEntities, "entity.batch", None)
        .await?;
    let (entities, mut errors) = parse_batch(body)?;
    // Each entity, as sent and as it is now, must be in the caller's scope;
    // the others are reported and not written.
    let (entities, refused): (Vec<Entity>, Vec<Entity>) = entities.into_iter().partition(|e| {
        let now = s.twin.get(e.id.as_str());
        caller.sees(e.scope.as_ref()) && now.is_none_or(|n| caller.sees(n.scope.as_ref()))
    });
    for e in refused {
        let denied = ApiError::Forbidden(format!(
            "entity {} is outside what the caller may change (its scope, or personal data)",
            e.id
        ));
        errors.push(json!({"entityId": e.id.to_string(), "error": denied.problem()}));
    }
    let outcome = if entities.is_empty() {
        Ok(WriteOutcome::Batch(vec![]))
    } else {
        s.ingest.write(WriteOp::Batch { kind, entities }).await
    };
    s.audit.batch_write(caller, kind, &outcome, errors.len()).await?;
    let outcome = outcome?;
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
            Err(e) => errors.push(json!({"entityId": id.to_string(), "error": ApiError::from(e).problem()})),
        }
    }
    Ok(if !errors.is_empty() {
        (
            StatusCode::MULTI_STATUS,
            Json(json!({"success": success, "errors": errors})),
        )
            .into_response()
    } else if all_created {
        (StatusCode::CREATED, Json(Value::Array(success))).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn batch_create(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    run_batch(&s, &caller, BatchKind::Create, &body).await
}

async fn batch_upsert(
    State(s): State<AppState>,
    caller: Caller,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let kind = if params.has_option("update") {
        BatchKind::UpsertUpdate
    } else {
        BatchKind::UpsertReplace
    };
    run_batch(&s, &caller, kind, &body).await
}
